"""Repeated seeds: each seed an ordinary run, one report of their spread."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ExpectedConfig
from pipeline.evaluation.repeats import format_repeats, summarize_repeats

REPO = Path(__file__).resolve().parents[2]
TINY = 'model.spec={ block = "bottleneck", stages = [1], filters = [16, 16] }'


def report(rank1, rank5):
    return {"rank1": rank1, "rank5": rank5}


def test_the_summary_is_the_mean_sample_std_and_best_of_the_seeds():
    summary = summarize_repeats({0: report(0.90, 0.99), 1: report(0.94, 1.0)}, None)
    assert summary["rank_1"]["mean"] == pytest.approx(0.92)
    assert summary["rank_1"]["std"] == pytest.approx(0.0282843, rel=1e-5)  # n - 1
    assert summary["rank_1"]["best"] == 0.94 and summary["rank_1"]["worst"] == 0.90
    assert summary["rank_5"]["mean"] == pytest.approx(0.995)
    assert "expected" not in summary


def test_the_expected_spread_is_beside_the_mean():
    expected = ExpectedConfig(
        rank_1=0.9339, rank_1_low=0.9323, rank_1_high=0.9357, source="He et al. 2015"
    )
    summary = summarize_repeats({0: report(0.934, None), 1: report(0.936, None)}, expected)
    assert summary["expected"]["mean_within_spread"] is True
    assert summary["expected"]["mean_difference"] == pytest.approx(0.0011)
    assert summary["rank_5"] is None
    text = format_repeats(summary)
    assert "mean 93.50% +- 0.14" in text and "the mean is inside" in text


def test_two_seeds_train_as_runs_and_report_from_their_own_evaluations(digits_dir, tmp_path):
    root = tmp_path / "repeats"
    command = [sys.executable, "repeat_runs.py", "--seeds", "3,4", "--checkpoints", str(root),
               "--epochs", "1", "--set", f"data.dataset_dir={digits_dir}", "--set", TINY,
               "--set", "training.batch_size=128"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((root / "repeats.json").read_text())
    assert summary["seeds"] == [3, 4]
    for seed in (3, 4):
        config = json.loads((root / f"seed_{seed}" / "config.json").read_text())
        assert config["training"]["seed"] == seed
    # A run's figure is its own evaluation: rank_accuracy.py scores seed 3 the same.
    evaluation = subprocess.run(
        [sys.executable, "rank_accuracy.py", "--checkpoints", str(root / "seed_3"), "--report",
         str(tmp_path / "report_3.json")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    scored = json.loads((tmp_path / "report_3.json").read_text())["rank1"]
    assert summary["runs"]["3"]["rank_1"] == scored
    runs = [summary["runs"][seed]["rank_1"] for seed in ("3", "4")]
    assert summary["rank_1"]["mean"] == pytest.approx(sum(runs) / 2)
    assert summary["rank_1"]["std"] == pytest.approx(abs(runs[0] - runs[1]) / 2**0.5)
    assert (root / "comparison" / "comparison.png").stat().st_size > 10_000
    assert "rank-1 over 2 seeds: mean" in done.stdout


# A ctrl+c in the second seed's second epoch, then the same call again (a fresh process:
# the SIGINT handler is process-wide).
CTRL_C_THEN_AGAIN = """
import os, signal, sys
import keras
from pipeline.api import repeat_runs

digits, root, tiny = sys.argv[1], sys.argv[2], sys.argv[3]
overrides = [f"data.dataset_dir={digits}", tiny, "training.batch_size=128",
             "training.checkpoint_every=1"]

class CtrlCInSecondSeed(keras.callbacks.Callback):
    fits = 0
    def on_train_begin(self, logs=None):
        CtrlCInSecondSeed.fits += 1
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_begin(self, batch, logs=None):
        if CtrlCInSecondSeed.fits == 2 and self.epoch == 1 and batch == 3:
            os.kill(os.getpid(), signal.SIGINT)

first = repeat_runs(None, [3, 4], checkpoints=root, overrides=overrides, epochs=2,
                    callbacks=[CtrlCInSecondSeed()])
print("first", first["ended"], first.get("seed"))
second = repeat_runs(None, [3, 4], checkpoints=root, overrides=overrides, epochs=2)
print("second", second["ended"], second["rank_1"]["count"])
"""


def test_a_ctrl_c_stops_the_seeds_and_the_same_call_goes_on(digits_dir, tmp_path):
    root = tmp_path / "repeats"
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_THEN_AGAIN, str(digits_dir), str(root), TINY],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "first interrupted 4" in done.stdout and "second finished 2" in done.stdout
    for seed in (3, 4):
        history = json.loads((root / f"seed_{seed}" / "history.json").read_text())
        assert history["epoch"] == [1, 2]  # each epoch once, the interrupted one included
    log = (root / "seed_4" / "train.log").read_text()
    assert "resuming from" in log
