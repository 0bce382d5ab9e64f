"""bench/device_check.py --quick: the GPU check runs end to end at small sizes, so it is
ready whenever an accelerator is lent; cut short, it resumes with what is missing."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PARTS = ("training", "loader", "fit", "demo")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="the check runs on JAX; jax is not installed"
)


def run_check(output: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "device_check.py"), "--quick",
         "--output", str(output), *options],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, KERAS_BACKEND="jax"),
    )  # fmt: skip


def test_the_quick_check_measures_every_part_and_resumes_with_what_is_missing(tmp_path):
    output = tmp_path / "check"
    first = run_check(output, "--parts", "training,fit")
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.strip() == ""  # no framework start-up lines
    measured = json.loads((output / "device_check.json").read_text())
    assert sorted(measured["parts"]) == ["fit", "training"]
    assert measured["machine"]["backend"] == "jax" and measured["machine"]["devices"]

    # Again with every part: only the loader and the demo are measured now.
    second = run_check(output)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "training tiny" not in second.stdout and "fit:" not in second.stdout
    results = json.loads((output / "device_check.json").read_text())
    assert sorted(results["parts"]) == sorted(PARTS)
    assert results["parts"]["training"] == measured["parts"]["training"]
    for name in ("tiny b16 float32", "tiny b16 mixed_bfloat16"):
        assert results["parts"]["training"][name]["images_per_second"] > 0
    assert sorted(results["parts"]["loader"]) == [
        "disk workers=1", "disk workers=2", "memory workers=1", "memory workers=2"
    ]  # fmt: skip
    fit = results["parts"]["fit"]["epoch"]
    assert fit["steps"] == 16 and fit["fit_epoch_seconds"] > 0
    demo = results["parts"]["demo"]["wall"]
    assert set(demo["seconds"]) == {"build", "train", "evaluate"}
    assert demo["rank_1"].startswith("rank-1: ")
    table = (output / "device_check.txt").read_text()
    assert "tiny b16 mixed_bfloat16" in table and "x float32" in table
    assert "digits demo, start to report" in table


def test_a_spent_budget_starts_no_measurement(tmp_path):
    completed = run_check(tmp_path / "check", "--parts", "training", "--budget", "0")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "stopped at --budget: run the same command again" in completed.stdout
    results = json.loads((tmp_path / "check" / "device_check.json").read_text())
    assert results["parts"] == {}
