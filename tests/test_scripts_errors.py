"""Bad input to the scripts: one line on stderr, exit code 2, no traceback, nothing lost."""

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
    assert_one_line_error(capsys, code, "already holds a run", "--start_epoch 5", "--overwrite")
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


@pytest.mark.parametrize("script", ["train.py", "rank_accuracy.py"])
def test_as_a_process_the_exit_code_is_2_and_there_is_no_traceback(tmp_path, script):
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / script),
            "--set",
            f"data.dataset_dir={tmp_path}/none",
            "--set",
            f"checkpoints={tmp_path}/run",
            "--model",
            str(tmp_path / "none.keras"),
        ]
        if script == "rank_accuracy.py"
        else [sys.executable, str(REPO / script), "--set", f"data.dataset_dir={tmp_path}/none"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "error: " in completed.stderr


def test_train_decay_refuses_a_config_that_names_another_schedule(capsys, tmp_path):
    code = train_decay.main(["--checkpoints", str(tmp_path), "--set", "training.schedule=cosine"])
    assert_one_line_error(capsys, code, "always trains with polynomial decay", "train.py")
