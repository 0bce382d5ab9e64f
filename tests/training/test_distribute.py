"""Distribution strategies and precisions, each in a fresh process: both are process-wide."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

COMMON = """
import sys, numpy as np
from pipeline.config import load_config
def tiny_config(digits, *extra):
    return load_config(None, [
        f"data.dataset_dir={digits}", "training.epochs=1", "training.batch_size=64",
        'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }', *extra,
    ])
"""

MIRRORED = (
    COMMON
    + """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
from pipeline.training.distribute import setup_distribution
from pipeline.training.start import train
print("replicas", setup_distribution("mirrored").num_replicas)
result = train(tiny_config(sys.argv[1], "training.distribute=mirrored"), run_dir=sys.argv[2])
print("final_loss", result.history["loss"][-1])
"""
)

PRECISIONS = (
    COMMON
    + """
import keras
from pipeline.models import load_model
from pipeline.training.start import train
for precision in ("mixed_float16", "mixed_bfloat16"):
    config = tiny_config(sys.argv[1], f"training.precision={precision}")
    result = train(config, run_dir=f"{sys.argv[2]}/{precision}")
    model = load_model(result.final_checkpoint)
    output = model(np.zeros((1, 32, 32, 3), "float32"))
    print(precision, result.history["loss"][-1], keras.backend.standardize_dtype(output.dtype))
"""
)


def run_python(code, *args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
    )  # fmt: skip


def test_mirrored_strategy_trains_on_two_logical_cpu_devices(tmp_path, digits_dir):
    completed = run_python(MIRRORED, digits_dir, tmp_path / "run")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "replicas 2" in completed.stdout
    loss = float(completed.stdout.split("final_loss")[1].split()[0])
    assert loss == loss and loss < 10  # finite
    assert (tmp_path / "run" / "epoch_0001.keras").is_file()


def test_short_runs_under_mixed_precision_keep_float32_outputs(tmp_path, digits_dir):
    completed = run_python(PRECISIONS, digits_dir, tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for precision in ("mixed_float16", "mixed_bfloat16"):
        line = next(line for line in completed.stdout.splitlines() if line.startswith(precision))
        _, loss, dtype = line.split()
        assert float(loss) < 10 and dtype == "float32"


def test_multiworker_is_refused_with_the_reason_on_tensorflow():
    code = (
        "from pipeline.training.distribute import setup_distribution\n"
        "from pipeline.errors import UserError\n"
        "try:\n    setup_distribution('multiworker')\n"
        "except UserError as error:\n    print('refused:', error)\n"
    )
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "refused:" in completed.stdout and "keras-team/keras#20585" in completed.stdout


JAX_DATA_PARALLEL = (
    COMMON
    + """
import keras
from pipeline.training.distribute import setup_distribution
from pipeline.training.start import train
assert keras.backend.backend() == "jax"
result = train(tiny_config(sys.argv[1], "training.distribute=auto"), run_dir=sys.argv[2])
print("devices", len(keras.distribution.distribution().device_mesh.devices.ravel()))
import json, zipfile
with zipfile.ZipFile(result.final_checkpoint) as archive:
    compiled = json.loads(archive.read("config.json"))["compile_config"]["jit_compile"]
print("jit_compile", compiled)
print("final_loss", result.history["loss"][-1])
"""
)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_data_parallel_on_two_simulated_jax_devices(tmp_path, digits_dir):
    completed = run_python(
        JAX_DATA_PARALLEL,
        digits_dir,
        tmp_path / "run",
        env={"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "devices 2" in completed.stdout
    # Compiled: op by op, a device's collective could wait for a partner that never came.
    assert "jit_compile True" in completed.stdout
    assert float(completed.stdout.split("final_loss")[1].split()[0]) < 10


# Each of two worker processes runs this: an uninterrupted run, then a run that
# worker 1 alone interrupts (ctrl+c during batch 2 of epoch 1), then its resume.
MULTIWORKER = (
    COMMON
    + """
import json, os, signal
import keras
from pipeline.models import load_model
from pipeline.training.start import train
worker = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
config = tiny_config(
    sys.argv[1], "training.distribute=multiworker", "training.epochs=2",
    "training.checkpoint_every=1",
    'data.augment=[{name = "flip"}, {name = "randaugment", num_ops = 1}]',
)

class CtrlC(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_begin(self, batch, logs=None):
        if worker == 1 and self.epoch == 1 and batch == 2:
            os.kill(os.getpid(), signal.SIGINT)

straight = train(config, run_dir=f"{sys.argv[2]}/straight")
stopped = train(config, run_dir=f"{sys.argv[2]}/stopped", callbacks=[CtrlC()])
print("interrupted at", stopped.interrupted.epoch, stopped.interrupted.batch)
resumed = train(config, run_dir=f"{sys.argv[2]}/stopped", resume=True)
a = load_model(straight.final_checkpoint).get_weights()
b = load_model(resumed.final_checkpoint).get_weights()
print("max difference", max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)))
print("run_dir", straight.run_dir)
"""
)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_two_workers_on_loopback_train_stop_together_and_resume_exactly(tmp_path, digits_dir):
    """Two processes joined through TF_CONFIG on the JAX backend: each feeds its shard,
    both keep identical weights; ctrl+c on one worker stops both after the same batch,
    and the resumed run ends with the weights of the uninterrupted one."""
    addresses = [f"127.0.0.1:{free_port()}", "127.0.0.1:0"]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", MULTIWORKER, str(digits_dir), str(tmp_path)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(
                    os.environ,
                    TF_CPP_MIN_LOG_LEVEL="2",
                    KERAS_BACKEND="jax",
                    TF_CONFIG=json.dumps(tf_config),
                ),
            )  # fmt: skip
        )
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, errors) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, errors[-3000:]
    run_dirs = (tmp_path / "straight", tmp_path / "straight" / "worker_1")
    for (output, _), run_dir in zip(outputs, run_dirs, strict=True):
        assert "interrupted at 1 3" in output  # both stopped after batch 3 of epoch 1
        assert float(output.split("max difference")[1].split()[0]) <= 1e-6
        assert f"run_dir {run_dir}" in output
    # Worker 1 keeps its own copy of the run, equal to the chief's.
    chief = tmp_path / "straight" / "epoch_0002.keras"
    copy = tmp_path / "straight" / "worker_1" / "epoch_0002.keras"
    from pipeline.models import load_model

    for x, y in zip(load_model(chief).get_weights(), load_model(copy).get_weights(), strict=True):
        assert np.array_equal(x, y)
    for name in ("stopped", "stopped/worker_1"):
        # Each copy's interrupt was passed by the resumed run: gone from both.
        assert not (tmp_path / name / "interrupt.keras").exists()


# -- the cluster description -----------------------------------------------------------


def test_tf_config_gives_the_coordinator_and_this_workers_index():
    from pipeline.training.cluster import cluster_from_environment

    workers = ["a:1", "b:2", "c:3"]
    tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": 2}}
    cluster = cluster_from_environment({"TF_CONFIG": json.dumps(tf_config)})
    assert (cluster.coordinator, cluster.num_processes, cluster.process_id) == ("a:1", 3, 2)


def test_a_chief_in_tf_config_is_process_zero():
    from pipeline.training.cluster import cluster_from_environment

    cluster = {"chief": ["boss:1"], "worker": ["a:1", "b:2"]}
    as_worker = {"cluster": cluster, "task": {"type": "worker", "index": 0}}
    as_chief = {"cluster": cluster, "task": {"type": "chief", "index": 0}}
    worker = cluster_from_environment({"TF_CONFIG": json.dumps(as_worker)})
    chief = cluster_from_environment({"TF_CONFIG": json.dumps(as_chief)})
    assert (worker.coordinator, worker.process_id, worker.num_processes) == ("boss:1", 1, 3)
    assert chief.process_id == 0


def test_keras_distribution_variables_describe_a_cluster_too():
    from pipeline.training.cluster import cluster_from_environment

    cluster = cluster_from_environment(
        {
            "KERAS_DISTRIBUTION_JOB_ADDRESSES": "head:9000",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": "4",
            "KERAS_DISTRIBUTION_PROCESS_ID": "3",
        }
    )
    assert (cluster.coordinator, cluster.num_processes, cluster.process_id) == ("head:9000", 4, 3)


def one_worker_tf_config(task_type: str, index: int) -> dict:
    task = {"type": task_type, "index": index}
    return {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}, "task": task})}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "needs TF_CONFIG"),
        ({"TF_CONFIG": "{not json"}, "TF_CONFIG must be JSON"),
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}}'}, "TF_CONFIG must be JSON"),
        (one_worker_tf_config("ps", 0), "must be 'chief' or 'worker'"),
        (one_worker_tf_config("worker", 1), "index 1 is not among the 1 workers"),
        ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:2"}, "KERAS_DISTRIBUTION_PROCESS_ID"),
        (
            {
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:2",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "3",
                "KERAS_DISTRIBUTION_PROCESS_ID": "0",
            },
            "NUM_PROCESSES is 3 but .* lists 2",
        ),
        (
            {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                        "task": {"type": "chief", "index": 1},
                    }
                )
            },
            "chief's index 1 is not among the 1 chiefs",
        ),
        (one_worker_tf_config("worker", -1), "index -1 is not among"),
    ],
)
def test_a_bad_cluster_description_is_a_one_line_error(environ, message):
    from pipeline.errors import UserError
    from pipeline.training.cluster import cluster_from_environment

    with pytest.raises(UserError, match=message) as raised:
        cluster_from_environment(environ)
    assert "\n" not in str(raised.value)


def test_workers_other_than_the_chief_write_to_their_own_folder(tmp_path, monkeypatch):
    import keras

    from pipeline.training.distribute import worker_run_dir

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    tf_config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert worker_run_dir(tmp_path, "multiworker") == tmp_path / "worker_1"
    assert worker_run_dir(tmp_path, "mirrored") == tmp_path
    tf_config["task"]["index"] = 0
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert worker_run_dir(tmp_path, "multiworker") == tmp_path


def test_multiworker_on_tensorflow_is_refused_before_the_run_directory_is_touched(
    tmp_path, monkeypatch, digits_dir
):
    from pipeline.config import load_config
    from pipeline.errors import UserError
    from pipeline.training.start import train

    tf_config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    config = load_config(
        None, [f"data.dataset_dir={digits_dir}", "training.distribute=multiworker"]
    )
    with pytest.raises(UserError, match="KERAS_BACKEND=jax"):
        train(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_resumed_worker_reads_its_own_copy_of_the_config(tmp_path, monkeypatch):
    from pipeline.training.run_config import _saved_config

    (tmp_path / "worker_1").mkdir()
    (tmp_path / "worker_1" / "config.json").write_text("{}")
    assert _saved_config(tmp_path) is None  # no cluster: the chief's, which is missing
    tf_config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert _saved_config(tmp_path) == tmp_path / "worker_1" / "config.json"
    (tmp_path / "worker_1" / "config.json").unlink()
    (tmp_path / "config.json").write_text("{}")  # a shared file system: the chief's
    assert _saved_config(tmp_path) == tmp_path / "config.json"


def two_worker_distribution(index: int, **collectives):
    import contextlib

    from pipeline.training.distribute import Distribution

    distribution = Distribution(
        contextlib.nullcontext(), num_replicas=2, name="multiworker", process_index=index,
        process_count=2,
    )  # fmt: skip
    for name, function in collectives.items():
        setattr(distribution, name, function)
    return distribution


@pytest.mark.parametrize("some_worker_lacks_memory", [False, True])
def test_workers_agree_on_the_storage_mode_that_decides_the_epoch_order(
    digits_dir, some_worker_lacks_memory
):
    from pipeline.config import load_config
    from pipeline.io.epoch_order import Shard
    from pipeline.io.storage import InMemoryStorage, OutOfCoreStorage
    from pipeline.training.data import open_data

    config = load_config(None, [f"data.dataset_dir={digits_dir}", "training.batch_size=64"])
    distribution = two_worker_distribution(1, any_process=lambda flag: some_worker_lacks_memory)
    train_data, val_data = open_data(config, distribution)
    expected = OutOfCoreStorage if some_worker_lacks_memory else InMemoryStorage
    assert isinstance(train_data.storage, expected)
    assert train_data.batch_size == 32 and train_data.num_samples == 1257 // 2
    assert train_data.shard == Shard(1, 2, equal=True)
    # Every worker feeds the whole validation split.
    assert val_data.num_samples == 180 and val_data.shard == Shard()


def test_workers_must_resume_from_the_same_point_with_the_same_count(tmp_path):
    from pipeline.errors import UserError
    from pipeline.runs.run_state import StartPoint
    from pipeline.runs.start_config import check_workers_agree

    compared = []

    def agreeing(values):
        compared.append(values)
        return True

    start = StartPoint(tmp_path / "interrupt.keras", epoch=3, batch=5, batch_size=64, workers=4)
    distribution = two_worker_distribution(0, same_on_every_process=agreeing)
    with pytest.raises(UserError, match="mid-epoch with 4 worker.*this run has 2"):
        check_workers_agree(start, distribution, batch_size=64)
    # The collective comparison comes first, so every worker raises, or none does.
    assert compared == [(3, 5, 4, 64)]
    two = StartPoint(tmp_path / "interrupt.keras", epoch=3, batch=5, batch_size=32, workers=2)
    with pytest.raises(UserError, match="batch size 32, not 64"):
        check_workers_agree(two, distribution, batch_size=64)
    check_workers_agree(
        StartPoint(tmp_path / "epoch_0003.keras", 3, 0, workers=4), distribution, 64
    )
    disagreeing = two_worker_distribution(0, same_on_every_process=lambda values: False)
    with pytest.raises(UserError, match="start from different points"):
        check_workers_agree(StartPoint(tmp_path / "epoch_0003.keras", 3, 0), disagreeing, 64)


def test_workers_with_different_storage_settings_are_refused(digits_dir):
    from pipeline.config import load_config
    from pipeline.errors import UserError
    from pipeline.training.data import open_data

    config = load_config(None, [f"data.dataset_dir={digits_dir}", "data.storage=disk"])
    distribution = two_worker_distribution(
        0, any_process=lambda flag: False, same_on_every_process=lambda values: False
    )
    with pytest.raises(UserError, match="data.storage differs between the workers"):
        open_data(config, distribution)


def test_a_foreign_tf_config_does_not_break_a_single_machine_resume(tmp_path, monkeypatch):
    from pipeline.training.run_config import _saved_config

    (tmp_path / "config.json").write_text("{}")
    foreign = {"cluster": {"workerpool0": ["a:1"]}, "task": {"type": "workerpool0", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(foreign))
    assert _saved_config(tmp_path) == tmp_path / "config.json"
