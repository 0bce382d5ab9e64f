"""Source arguments that are not image trees (CIFAR archives, label files) are untrusted:
a FIFO, a device, a link to one or an oversized file is one line, at once, in bounded
memory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.datasets.source_files import MAX_ARCHIVE_BYTES, MAX_TEXT_BYTES
from tests.datasets.solid_colour_images import colour, write_png

REPO = Path(__file__).resolve().parent.parent.parent
# Far above what refusing a file costs, far below what reading /dev/zero would take.
MEMORY_BOUND_BYTES = 1536 * 1024**2


def hostile_files(folder: Path, oversized_bytes: int) -> dict[str, Path]:
    """A FIFO, /dev/zero, a link to it, and a sparse file over the size cap."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    link = folder / "zero_link"
    link.symlink_to("/dev/zero")
    oversized = folder / "oversized"
    with open(oversized, "wb") as handle:
        handle.truncate(oversized_bytes)  # sparse: nothing written
    return {"fifo": fifo, "device": Path("/dev/zero"), "link": link, "oversized": oversized}


# build_dataset.py in a process of its own, which prints its own peak memory (KiB).
MEASURED = """
import sys
sys.path.insert(0, sys.argv[1])
import build_dataset
code = build_dataset.main(sys.argv[2:])
# VmHWM: this process's own peak (ru_maxrss keeps the parent's across fork and exec).
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("peak", int(peak[0].split()[1]))
sys.exit(code)
"""


def build(*arguments, cwd: Path) -> subprocess.CompletedProcess:
    """Run build_dataset.py (within 60 s: a hang fails the test) and check its memory."""
    completed = subprocess.run(
        [sys.executable, "-c", MEASURED, str(REPO), *map(str, arguments)],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    peak = int(completed.stdout.split("peak ")[1]) * 1024
    assert peak < MEMORY_BOUND_BYTES
    return completed


def assert_one_line(completed, *words) -> None:
    assert completed.returncode == 2, completed.stderr[-2000:]
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(word in lines[0] for word in words), lines[0]


@pytest.mark.parametrize("kind", ["fifo", "device", "link", "oversized"])
def test_a_cifar_source_that_is_no_regular_file_is_one_line_at_once(tmp_path, kind):
    source = hostile_files(tmp_path / "hostile", MAX_ARCHIVE_BYTES + 1)[kind]
    completed = build("--dataset", "cifar10", "--source", source, "--output", "out", cwd=tmp_path)
    words = ["over the"] if kind == "oversized" else ["not a regular file"]
    assert_one_line(completed, "--source", str(source), *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "link", "oversized", "endless line"])
def test_folder_val_labels_that_are_no_label_file_are_one_line_at_once(tmp_path, kind):
    for label in (0, 1):
        write_png(tmp_path / "train" / f"class{label}" / "a.png", colour(label, 0), 8)
    write_png(tmp_path / "val" / "v.png", colour(0, 1), 8)
    if kind == "endless line":
        labels = tmp_path / "labels.txt"
        labels.write_text("v.png " + "x" * 100_000)
    else:
        labels = hostile_files(tmp_path / "hostile", MAX_TEXT_BYTES + 1)[kind]
    completed = build(
        "--dataset", "folder", "--source", "train", "--val-source", "val",
        "--val-labels", labels, "--output", "out", cwd=tmp_path,
    )  # fmt: skip
    words = {"oversized": "over the", "endless line": "line 1 is over"}
    assert_one_line(completed, "--val-labels", words.get(kind, "not a regular file"))
