"""Distribution strategies and precisions, each in a fresh process: both are process-wide."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

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
from pipeline.distribute import setup_distribution
from pipeline.training import train
print("replicas", setup_distribution("mirrored").num_replicas)
result = train(tiny_config(sys.argv[1], "training.distribute=mirrored"), run_dir=sys.argv[2])
print("final_loss", result.history["loss"][-1])
"""
)

PRECISIONS = (
    COMMON
    + """
import keras
from pipeline.nn.model_io import load_model
from pipeline.training import train
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
        "from pipeline.distribute import setup_distribution\n"
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
from pipeline.distribute import setup_distribution
from pipeline.training import train
assert keras.backend.backend() == "jax"
result = train(tiny_config(sys.argv[1], "training.distribute=auto"), run_dir=sys.argv[2])
print("devices", len(keras.distribution.distribution().device_mesh.devices.ravel()))
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
    assert float(completed.stdout.split("final_loss")[1].split()[0]) < 10
