"""bench/scale.py and bench/step.py run end to end at tiny sizes, so their figures can be
measured on any machine; the figures themselves are for the README, not for tests."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_bench(script: str, *options: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *options],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_scale_measures_the_out_of_core_split_and_the_growing_builds(tmp_path):
    output = run_bench(
        "scale.py", "--gigabytes", "0.02", "--tree-sizes", "100,200,300",
        "--scratch", str(tmp_path), "--keep-page-cache", "--rounds", "2",
    )  # fmt: skip
    rounds = re.findall(
        r"round \d: sequential through h5py \d+ img/s .* raw sequential \d+ img/s, "
        r"shuffled augmented .* img/s",
        output,
    )
    assert len(rounds) == 2, output
    assert re.search(
        r"shuffled augmented epoch from disk: \d+% of the sequential read through h5py and "
        r"\d+% of the raw sequential read",
        output,
    )
    builds = r"folder build of \d+ JPEGs \(.*\): [\d.]+ ms/image, peak RSS \d+ MiB"
    assert len(re.findall(builds, output)) == 3
    assert len(re.findall(r"each image from \d+ to \d+: -?[\d.]+ ms", output)) == 2
    assert "time per image: largest/smallest" in output
    assert "each further image: largest/smallest" in output
    assert list(tmp_path.iterdir()) == []  # its scratch files are removed


def test_step_prints_both_precisions_and_their_ratio():
    output = run_bench(
        "step.py", "--networks", "resnet20", "--batch-size", "8", "--batches", "2",
        "--repeats", "1", "--demo-epochs", "0",
    )  # fmt: skip
    assert re.search(r"resnet20: float32 \d+ img/s, mixed_bfloat16 \d+ img/s, ratio [\d.]+", output)
    assert re.search(r"bfloat16 flags: ", output)
    assert "PyTorch" in output
