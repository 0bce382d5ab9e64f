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
    # Each run's figures are its own evaluation, scored again here.
    scored = {}
    for seed in (3, 4):
        run_dir = root / f"seed_{seed}"
        assert json.loads((run_dir / "config.json").read_text())["training"]["seed"] == seed
        evaluation = subprocess.run(
            [sys.executable, "rank_accuracy.py", "--checkpoints", str(run_dir), "--report",
             str(tmp_path / f"report_{seed}.json")],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert evaluation.returncode == 0, evaluation.stderr[-2000:]
        scored[seed] = json.loads((tmp_path / f"report_{seed}.json").read_text())["rank1"]
        assert summary["runs"][str(seed)]["rank_1"] == scored[seed]
    mean = (scored[3] + scored[4]) / 2
    assert summary["rank_1"]["mean"] == pytest.approx(mean)
    assert summary["rank_1"]["std"] == pytest.approx(abs(scored[3] - scored[4]) / 2**0.5)
    assert (root / "comparison" / "comparison.png").stat().st_size > 10_000
    assert "rank-1 over 2 seeds: mean" in done.stdout
    # The same command again keeps the finished seeds and reports the same figures.
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Epoch" not in again.stdout
    assert json.loads((root / "repeats.json").read_text())["rank_1"] == summary["rank_1"]
