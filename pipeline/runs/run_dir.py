"""The run directory: the name of every file in it, and the lock a training run holds.

    epoch_0005.keras  epoch_0005.json    checkpoint after 5 epochs, and its state
    interrupt.keras   interrupt.json     checkpoint of a ctrl+c (epoch, batch)
    best.keras        best.json          best value of training.best_metric
    latest.json                          which checkpoint to resume from
    config.json                          the config the run trains with now (--lr changes
                                         included); rewritten at every start
    run_info.json                        package versions, git commit, data fingerprints
    history.json history.csv training.png   one row per epoch (pipeline/runs/history.py)
    train.log                            every start, resume, change, interrupt and end
    train.lock                           held while a run trains here
    abandoned/                           the branches a rewind (--start_epoch, --model) left
    logs/                                TensorBoard's, with training.tensorboard
    worker_1/ ...                        each other worker's copy of a multi-worker run

Every file is written to a temporary name and renamed, so a crash never leaves
a half-written checkpoint, state or pointer that a reader could take. The files
themselves: pipeline/runs/json_files.py (JSON, bounded and strict),
checkpoint_files.py (checkpoints and their states), run_reading.py (the
checkpoint to go on from), run_info.py (config.json and run_info.json).
"""

import contextlib
import datetime
import fcntl
import os
import re
import sys
from pathlib import Path

from pipeline.errors import UserError

CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d+)\.keras$")
INTERRUPT = "interrupt.keras"
BEST = "best.keras"
LATEST = "latest.json"
CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.json"
LOCK_FILE = "train.lock"
HISTORY_FILE = "history.json"
CSV_FILE = "history.csv"
PLOT_FILE = "training.png"
LOG_FILE = "train.log"
ABANDONED_DIR = "abandoned"
TENSORBOARD_DIR = "logs"
# A multi-worker run's worker K keeps its own copy of the run in worker_K/.
WORKER_DIR_PREFIX = "worker_"
# The records of a run, beside its checkpoints.
RECORDS = (LATEST, HISTORY_FILE, CSV_FILE, PLOT_FILE, CONFIG_FILE, RUN_INFO_FILE, LOG_FILE)


def checkpoint_path(run_dir, epoch: int) -> Path:
    """The checkpoint written after `epoch` completed epochs."""
    return Path(run_dir) / f"epoch_{epoch:04d}.keras"


def state_path(checkpoint) -> Path:
    return Path(checkpoint).with_suffix(".json")


def list_checkpoints(run_dir) -> dict[int, Path]:
    """Completed epoch checkpoints in a run directory, by epoch (partial writes excluded)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    found = {}
    for path in run_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def inside_run_dir(path, run_dir) -> bool:
    """Whether `path` is a file of the run directory itself (not of another run)."""
    return Path(path).resolve().parent == Path(run_dir).resolve()


def append_log(run_dir, line: str) -> None:
    """Append a line, with the time, to the run's train.log."""
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with open(Path(run_dir) / LOG_FILE, "a", encoding="utf-8") as handle:
        handle.write(f"{stamp} {line}\n")


def warn(message: str) -> None:
    """A note on stderr about a run file that reading or writing went on without."""
    print(f"warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold the run directory for one training run; a second run on it is refused.

    An OS file lock, so a crashed run never leaves a stale lock behind; the file goes at
    every exit, and a run directory this start created is removed again when the start
    wrote nothing into it (a refused start leaves no new folder behind).
    """
    run_dir = Path(run_dir)
    created = _first_missing(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = _take_lock(run_dir / LOCK_FILE, run_dir)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        # Removed while still held: a run starting now creates and locks a new file.
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        if created is not None:
            _remove_empty_folders(run_dir, created)


def _take_lock(path: Path, run_dir: Path):
    """The lock file, open and locked. A run that ends removes its lock file while it
    holds it: a file locked after that is no longer the run directory's (its name now
    leads to another, or none), so the lock is taken again on the file that is there."""
    for _attempt in range(10):
        # Not a with-block: the handle must stay open, and locked, for the whole run.
        handle = open(path, "a+")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(
                f"another training run (pid {holder}) is using {run_dir}; wait for it to "
                f"end or choose another --checkpoints"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            return handle
        handle.close()  # the file that was removed: try the one there now
    raise UserError(f"could not take the lock of {run_dir}; retry")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None: it exists)."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_empty_folders(path: Path, up_to: Path) -> None:
    """Remove `path` and its parents up to `up_to`, as long as they are empty."""
    for folder in [path, *path.parents]:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (the run wrote there), or already gone
        if folder == up_to:
            return
