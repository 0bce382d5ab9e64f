"""Bad input to the scripts: one line on stderr, exit code 2, no traceback, nothing lost."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import build_dataset
import rank_accuracy
import train
import train_decay

REPO = Path(__file__).resolve().parent.parent


def assert_one_line_error(capsys, exit_code, *fragments):
    assert exit_code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error, error
    for fragment in fragments:
        assert fragment in error


def test_missing_data_set(capsys, tmp_path):
    code = train.main(
        ["--checkpoints", str(tmp_path / "run"), "--set", f"data.dataset_dir={tmp_path}/none"]
    )
    assert_one_line_error(capsys, code, "does not exist", "build_dataset.py")


def test_missing_checkpoint(capsys, tmp_path, digits_dir):
    code = rank_accuracy.main(
        ["--set", f"checkpoints={tmp_path}/run", "--set", f"data.dataset_dir={digits_dir}"]
    )
    assert_one_line_error(capsys, code, "no checkpoint in")


def test_missing_model_file(capsys, tmp_path, digits_dir):
    code = rank_accuracy.main(
        ["--model", str(tmp_path / "gone.keras"), "--dataset", str(digits_dir)]
    )
    assert_one_line_error(capsys, code, "gone.keras does not exist")


def test_unknown_config_key(capsys):
    assert_one_line_error(
        capsys, train.main(["--set", "training.epoch=3"]), "unknown config key 'training.epoch'"
    )


def test_unknown_option(capsys):
    assert_one_line_error(capsys, train.main(["--epoch", "3"]), "unrecognized arguments")


def test_start_epoch_without_its_checkpoint_lists_those_that_exist(capsys, tmp_path, digits_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "epoch_0005.keras").write_bytes(b"x")
    code = train.main(
        [
            "--checkpoints",
            str(run_dir),
            "--start_epoch",
            "7",
            "--set",
            f"data.dataset_dir={digits_dir}",
        ]
    )
    assert_one_line_error(capsys, code, "no checkpoint after epoch 7", "5")


def test_a_used_run_directory_is_not_overwritten(capsys, tmp_path, digits_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoint = run_dir / "epoch_0005.keras"
    checkpoint.write_bytes(b"precious")
    code = train.main(["--checkpoints", str(run_dir), "--set", f"data.dataset_dir={digits_dir}"])
    assert_one_line_error(capsys, code, "already holds a run", "--resume", "--overwrite")
    assert checkpoint.read_bytes() == b"precious"


@pytest.mark.parametrize("rate", ["0", "-0.1", "nan", "inf"])
def test_a_learning_rate_that_is_not_a_finite_positive_number(capsys, tmp_path, digits_dir, rate):
    code = train.main(
        ["--checkpoints", str(tmp_path), "--lr", rate, "--set", f"data.dataset_dir={digits_dir}"]
    )
    assert_one_line_error(capsys, code, "--lr must be a finite number > 0")


def test_existing_data_set_is_not_overwritten(capsys, digits_dir):
    before = (digits_dir / "train.h5").stat().st_mtime_ns
    code = build_dataset.main(["--dataset", "digits", "--output", str(digits_dir)])
    assert_one_line_error(capsys, code, "--overwrite")
    assert (digits_dir / "train.h5").stat().st_mtime_ns == before


def test_unknown_data_set(capsys):
    assert_one_line_error(capsys, build_dataset.main(["--dataset", "cifar-11"]), "invalid choice")


def script_arguments(script, tmp_path):
    """Arguments that make each script fail on a user error found after Keras is loaded."""
    bad_model = tmp_path / "bad.keras"
    bad_model.write_bytes(b"not a zip")
    missing_data = ["--set", f"data.dataset_dir={tmp_path}/none"]
    return {
        "train.py": ["--checkpoints", str(tmp_path / "run"), *missing_data],
        "train_decay.py": ["--checkpoints", str(tmp_path / "run"), *missing_data],
        "rank_accuracy.py": ["--model", str(bad_model), "--dataset", str(tmp_path)],
        "predict.py": [str(tmp_path), "--model", str(bad_model)],
    }[script]


@pytest.mark.parametrize("script", ["train.py", "train_decay.py", "rank_accuracy.py", "predict.py"])
def test_as_a_process_a_user_error_is_exactly_one_line_on_stderr(tmp_path, script):
    # Without TF_CPP_MIN_LOG_LEVEL: the scripts themselves keep the framework quiet.
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    completed = subprocess.run(
        [sys.executable, str(REPO / script), *script_arguments(script, tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr


def test_a_backend_that_is_not_installed_is_one_line(tmp_path):
    environment = dict(os.environ, KERAS_BACKEND="no_such_backend")
    completed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *script_arguments("train.py", tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: KERAS_BACKEND=no_such_backend is not a Keras backend; use one of "
        "tensorflow, jax, torch, numpy, openvino"
    ]


def test_train_decay_refuses_a_config_that_names_another_schedule(capsys, tmp_path):
    code = train_decay.main(["--checkpoints", str(tmp_path), "--set", "training.schedule=cosine"])
    assert_one_line_error(capsys, code, "always trains with polynomial decay", "train.py")


@pytest.mark.parametrize(
    "backend",
    [
        "tensorflow",
        pytest.param(
            "jax",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("jax") is None, reason="jax is not installed"
            ),
        ),
    ],
)
def test_a_training_run_prints_no_framework_lines(tmp_path, digits_dir, backend):
    # On JAX too: Keras imports TensorFlow lazily wherever it is installed.
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["KERAS_BACKEND"] = backend
    tiny = 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'
    completed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--checkpoints", str(tmp_path / "run"),
         "--epochs", "1", "--set", f"data.dataset_dir={digits_dir}", "--set", tiny],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    noise = [line for line in completed.stderr.splitlines() if line.strip()]
    assert noise == [], noise  # no oneDNN, cuda, absl or cuInit lines
