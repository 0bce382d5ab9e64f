"""The learning-rate range test: its numbers (no framework), and find_lr.py on the digits,
whose printed command is run as printed."""

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.training.lr_range import diverged_at, exponential_rates, smoothed, suggest

REPO = Path(__file__).resolve().parents[2]
TINY = 'model.spec={ block = "basic", stages = [1, 1], filters = [4, 4, 8] }'


def test_rates_rise_by_a_constant_factor_from_min_to_max():
    rates = exponential_rates(1e-6, 1.0, 61)
    assert rates[0] == pytest.approx(1e-6) and rates[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(rates[1:] / rates[:-1], 10**0.1)


@pytest.mark.parametrize(
    "low, high, count", [(0.0, 1.0, 100), (1.0, 0.1, 100), (1e-6, math.inf, 100), (1e-6, 1, 5)]
)
def test_a_bad_range_is_one_line(low, high, count):
    with pytest.raises(UserError):
        exponential_rates(low, high, count)


def test_smoothing_keeps_a_constant_loss_and_follows_a_step():
    np.testing.assert_allclose(smoothed([2.0] * 50, 200), 2.0)
    stepped = smoothed([1.0] * 100 + [3.0] * 100, 200)
    assert stepped[99] == pytest.approx(1.0) and 2.9 < stepped[-1] < 3.0


def test_divergence_is_four_times_the_lowest_or_not_finite():
    assert diverged_at([3.0, 2.0, 1.0, 3.9, 4.1]) == 4
    assert diverged_at([3.0, 2.0, float("nan")]) == 2
    assert diverged_at([3.0, 2.0, 1.0]) is None


def test_the_suggestion_is_a_tenth_of_the_lowest_point():
    # A valley at 1e-1 in log(rate): falls fastest half-way down its left side.
    rates = exponential_rates(1e-5, 10.0, 121)
    position = np.log10(rates)
    losses = 2.5 - 1.5 * np.exp(-((position + 1) ** 2) / 0.5)
    suggestion = suggest(rates, losses)
    assert suggestion.lowest_loss_rate == pytest.approx(0.1, rel=0.07)
    assert suggestion.rate == pytest.approx(0.01, rel=0.07)
    assert 1e-3 < suggestion.steepest_rate < 0.1


def test_a_loss_that_never_falls_still_gives_a_rate_inside_the_range():
    rates = exponential_rates(1e-4, 1.0, 50)
    suggestion = suggest(rates, np.linspace(2.0, 3.0, 50))
    assert rates[0] <= suggestion.rate <= rates[-1]
    assert suggestion.steepest_rate is None and "never fell" in suggestion.how


def test_the_printed_command_trains_beside_a_run_that_is_there_already(tmp_path):
    from pipeline.config import load_config
    from pipeline.training.run_config import unused_run_dir

    config = load_config(None, [f"checkpoints={tmp_path / 'run'}"])
    assert unused_run_dir(config, 0.05) is None  # nothing there: the config's own
    (tmp_path / "run").mkdir()
    assert unused_run_dir(config, 0.05) is None  # an empty folder is free too
    (tmp_path / "run" / "train.log").write_text("a run\n")
    assert unused_run_dir(config, 0.05) == tmp_path / "run_lr0.05"


def test_find_lr_on_the_digits_writes_its_picture_and_numbers_and_a_command_that_runs(
    digits_dir, tmp_path
):
    output, run_dir = tmp_path / "lr", tmp_path / "run"
    sets = [f"data.dataset_dir={digits_dir}", TINY, "training.epochs=1"]
    command = [sys.executable, "find_lr.py", "--batches", "40", "--min", "1e-4", "--max", "10",
               "--output", str(output), "--checkpoints", str(run_dir)]  # fmt: skip
    for value in sets:
        command += ["--set", value]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((output / "lr_range.json").read_text())
    assert 1e-4 <= result["suggested_rate"] <= 10 and math.isfinite(result["suggested_rate"])
    assert len(result["rates"]) == len(result["losses"]) == result["batches"] <= 40
    png = (output / "lr_range.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert f"suggested learning rate: {result['suggested_rate']:g}" in done.stdout
    assert not run_dir.exists()  # the test trains no run
    # The printed command, run as printed: it trains at the suggested rate.
    printed = done.stdout.split("start a run with it: ", 1)[1].strip()
    assert printed == result["command"]
    words = shlex.split(printed)
    assert words[:2] == ["python", "train.py"]
    trained = subprocess.run(
        [sys.executable, *words[1:]], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["training"]["learning_rate"] == result["suggested_rate"]
    assert config["data"]["dataset_dir"] == str(digits_dir)
