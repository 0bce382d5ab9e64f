"""Operating-system errors (file too large, no space, read-only): one line naming the path,
exit code 2, the previous files intact and nothing half-written left behind."""

import os
import subprocess
import sys
from pathlib import Path

from pipeline.datasets import digits
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import read_split_info

REPO = Path(__file__).resolve().parent.parent

# Runs a script with writes capped at 64 KiB per file (what a full disk or a file-size
# quota does to a writer); SIGXFSZ ignored, so the write fails with EFBIG instead.
CAPPED = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_capped(*arguments):
    return subprocess.run(
        [sys.executable, "-c", CAPPED, *map(str, arguments)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )  # fmt: skip


def test_a_build_that_cannot_write_is_one_line_and_keeps_the_previous_data_set(tmp_path):
    dataset_dir = tmp_path / "digits"
    digits.build(dataset_dir)
    before = {split: read_split_info(split_path(dataset_dir, split)).build_id
              for split in ("train", "val", "test")}  # fmt: skip
    completed = run_capped(
        "build_dataset.py", "--dataset", "digits", "--output", dataset_dir, "--overwrite",
        "--val-fraction", "0.2",
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr[-2000:]
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in completed.stderr
    assert "File too large" in errors[0]
    # One line: the last line of stderr is the error (progress bars come before it).
    assert completed.stderr.rstrip().splitlines()[-1] == errors[0]
    after = {split: read_split_info(split_path(dataset_dir, split)).build_id
             for split in ("train", "val", "test")}  # fmt: skip
    assert after == before
    leftovers = [path.name for path in dataset_dir.rglob("*") if "partial" in path.name]
    assert leftovers == [] and not (dataset_dir / ".building").exists()


def test_training_that_cannot_save_is_one_line_naming_the_checkpoint(tmp_path, digits_dir):
    run_dir = tmp_path / "run"
    completed = run_capped(
        "train.py", "--checkpoints", run_dir, "--epochs", "1",
        "--set", f"data.dataset_dir={digits_dir}",
        "--set", 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }',
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr[-2000:]
    last = completed.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: File too large: ") and "epoch_0001.keras" in last
    assert "Traceback" not in completed.stderr
    assert not [path for path in run_dir.iterdir() if "partial" in path.name]
    assert not list(run_dir.glob("*.keras")) and not (run_dir / "latest.json").exists()
