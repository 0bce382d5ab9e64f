"""The three scripts, run as a user runs them, on the real digits data with tiny settings."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL = ["--set", 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }']


def run_script(script, *args, backend=None, cwd=REPO):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if backend:
        env["KERAS_BACKEND"] = backend
    completed = subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def train_args(digits_dir, run_dir, epochs, schedule="constant"):
    # The ctrl+c way: a constant rate that --lr replaces (None: the default config's).
    schedule_override = ["--set", f"training.schedule={schedule}"] if schedule else []
    return [
        "--checkpoints",
        run_dir,
        "--epochs",
        epochs,
        "--set",
        f"data.dataset_dir={digits_dir}",
        "--set",
        "training.checkpoint_every=1",
        *schedule_override,
        *TINY_MODEL,
    ]


def test_build_train_resume_and_evaluate_through_the_scripts(tmp_path):
    # The demo's folders, in tmp_path: the preset's expected figures hold for its data set.
    digits_dir, run_dir = tmp_path / "output/datasets/digits", tmp_path / "run"
    output = run_script("build_dataset.py", "--dataset", "digits", "--output", digits_dir)
    assert "1257 images" in output
    summary = json.loads((digits_dir / "build_summary.json").read_text())
    assert summary["images_per_split"] == {"train": 1257, "val": 180, "test": 360}
    assert {path.name for path in digits_dir.iterdir()} >= {
        "train.h5",
        "val.h5",
        "test.h5",
        "mean.json",
    }

    run_script("train.py", *train_args(digits_dir, run_dir, 2))
    assert sorted(path.name for path in run_dir.glob("epoch_*.keras")) == [
        "epoch_0001.keras",
        "epoch_0002.keras",
    ]
    for name in ("history.json", "training.png", "config.json"):
        assert (run_dir / name).is_file()
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= history.keys()
    assert json.loads((run_dir / "config.json").read_text())["training"]["epochs"] == 2

    # The ctrl+c way: resume at epoch 1 with a lower rate; the history is trimmed and continued.
    run_script("train.py", *train_args(digits_dir, run_dir, 3), "--start_epoch", 1, "--lr", 0.01)
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]
    assert history["learning_rate"] == pytest.approx([0.05, 0.01, 0.01])

    report_path = tmp_path / "report.json"
    output = run_script(
        "rank_accuracy.py",
        "--set",
        f"checkpoints={run_dir}",
        "--set",
        f"data.dataset_dir={digits_dir}",
        "--report",
        report_path,
        cwd=tmp_path,
    )
    report = json.loads(report_path.read_text())
    assert report["model"].endswith("epoch_0003.keras")  # the newest checkpoint
    assert report["num_samples"] == 360 and report["split"] == "test"
    assert 0.0 <= report["rank1"] <= report["rank5"] <= 1.0
    assert report["rank1_correct"] == round(report["rank1"] * 360)
    printed = re.search(r"rank-1: ([\d.]+)% \((\d+)/360\)", output)
    assert printed and int(printed.group(2)) == report["rank1_correct"]
    # The digits preset states what the demo reaches: measured and expected side by side.
    reproduction = report["reproduction"]
    assert reproduction["expected"] == {
        "rank_1": 0.98056, "rank_1_spread": [0.97777, 0.98890], "rank_5": 1.0
    }  # fmt: skip
    assert reproduction["measured"] == {"rank_1": report["rank1"], "rank_5": report["rank5"]}
    assert reproduction["compared"] is True
    assert reproduction["difference"]["rank_1"] == pytest.approx(report["rank1"] - 0.98056)
    assert reproduction["within_spread"] == (0.97777 <= report["rank1"] <= 0.98890)
    assert "expected (this project's demo, seeds 0-2" in output
    # Each epoch's training time is in the history (a resumed epoch's included).
    assert all(seconds > 0 for seconds in history["seconds"])


def test_train_decay_on_the_default_config_trains_polynomial_decay(tmp_path, digits_dir):
    # The default preset names cosine, for train.py; train_decay.py replaces it and says so.
    output = run_script(
        "train_decay.py",
        *train_args(digits_dir, tmp_path / "run", 2, schedule=None),
        "--set",
        "training.learning_rate=0.1",
    )
    assert "training.schedule 'cosine' replaced by 'polynomial'" in output
    assert "polynomial decay to 0 over 2 epochs" in output
    assert (
        "learning rate 0.1 for the next batch, 0.05 at the start of epoch 2 (the last) "
        "(polynomial schedule from 0.1)"
    ) in output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["learning_rate"] == pytest.approx([0.1, 0.05])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["training"]["schedule"] == "polynomial"


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_the_demo_path_runs_on_the_jax_backend(tmp_path, digits_dir):
    run_dir = tmp_path / "run"
    run_script("train.py", *train_args(digits_dir, run_dir, 1), backend="jax")
    output = run_script(
        "rank_accuracy.py",
        "--model",
        run_dir / "epoch_0001.keras",
        "--dataset",
        digits_dir,
        backend="jax",
    )
    assert "rank-1:" in output and "(" in output
