"""Going back, and starting over: what a start sets aside (no Keras here).

Going back to an earlier checkpoint (`--start_epoch N`, `--model PATH`) moves what
came after it into `abandoned/<time>_after_epoch_N/`, so that nothing of an
abandoned branch is loaded again unless the user names it; `--overwrite` deletes
the run. Each is one transaction (pipeline/runs/run_change.py), and `apply_start`
carries it out only once everything the run needs has been checked.
"""

import datetime
import os
from pathlib import Path

from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.history import load_history
from pipeline.runs.run_change import BIN_PREFIX, RunChange, carry_out, check_room
from pipeline.runs.run_dir import (
    ABANDONED_DIR,
    BEST,
    CONFIG_FILE,
    CSV_FILE,
    HISTORY_FILE,
    INTERRUPT,
    PLOT_FILE,
    RECORDS,
    inside_run_dir,
    list_checkpoints,
    state_path,
)
from pipeline.runs.run_state import StartPoint


def apply_start(run_dir: Path, start: StartPoint, now: datetime.datetime | None = None):
    """Make the run directory match the start point; returns the folder an abandoned
    branch was moved to (None when nothing was set aside)."""
    run_dir = Path(run_dir)
    if start.clear:
        clear_run(run_dir)
        return None
    if not start.rewind:
        return None
    return rewind(run_dir, start, now or datetime.datetime.now())


def rewind(run_dir: Path, start: StartPoint, now: datetime.datetime) -> Path | None:
    """Go back to `start`, as one transaction (pipeline.runs.run_change): latest.json names
    it, what came after it moves aside with copies of the records, and the history is
    cut to the epochs that led to it. Returns the folder of the abandoned branch."""
    change, folder = plan_rewind(run_dir, start, now)
    check_room(run_dir, change)
    carry_out(run_dir, change)
    return folder


def plan_rewind(run_dir: Path, start: StartPoint, now: datetime.datetime):
    """The rewind's change, and the folder it sets the abandoned branch aside in (None:
    nothing to set aside). Writes nothing."""
    own = inside_run_dir(start.checkpoint, run_dir)
    later = _after(run_dir, start, own)
    logged_epochs = len(load_history(run_dir, 10**9).get("epoch", []))
    # From elsewhere, the whole history here belongs to the abandoned branch.
    history_abandoned = logged_epochs > (start.epoch if own else 0)
    folder, copies, moves = None, [], []
    if later or history_abandoned:
        folder = _new_abandoned_folder(run_dir, start, now).relative_to(run_dir)
        for path in later:
            moves.append((path.name, str(folder / path.name)))
            if state_path(path).exists():
                moves.append((state_path(path).name, str(folder / state_path(path).name)))
        for name in (HISTORY_FILE, CSV_FILE, PLOT_FILE, CONFIG_FILE):
            if (run_dir / name).is_file():
                copies.append((name, str(folder / name)))
    history_from = None
    if not own:
        # The history of the epochs that led to the checkpoint, from its own run.
        history_from = str(start.checkpoint.parent.resolve())
    elif folder is not None:
        history_from = str(folder)  # the copy: the history here may be cut already
    change = RunChange(
        "rewind", tuple(copies), tuple(moves), start.checkpoint.name if own else None,
        history_from, start.epoch,
    )  # fmt: skip
    return change, None if folder is None else run_dir / folder


def _after(run_dir: Path, start: StartPoint, own: bool) -> list[Path]:
    """The checkpoints of the run directory that do not lead to the start point: those
    after it, or every one when the start comes from elsewhere."""
    candidates = [*list_checkpoints(run_dir).values(), run_dir / INTERRUPT, run_dir / BEST]
    later = []
    for path in candidates:
        if not path.is_file() or (own and path.resolve() == start.checkpoint.resolve()):
            continue
        try:
            state = read_state(path)
        except UserError:
            later.append(path)  # a damaged state cannot show it leads here: set it aside
            continue
        if not own or (state["epoch"], state["batch"]) > start.position:
            later.append(path)
    return later


def _new_abandoned_folder(run_dir: Path, start: StartPoint, now: datetime.datetime) -> Path:
    """A folder name not yet taken (made when the rewind is carried out)."""
    base = f"{now:%Y%m%d-%H%M%S}_after_epoch_{start.epoch:04d}"
    folder = run_dir / ABANDONED_DIR / base
    number = 1
    while folder.exists():
        number += 1
        folder = run_dir / ABANDONED_DIR / f"{base}_{number}"
    return folder


def clear_run(run_dir: Path, now: datetime.datetime | None = None) -> None:
    """Delete a run's checkpoints, their states and its records (for --overwrite), and
    its abandoned branches, as one transaction: all move into a bin, which goes last."""
    run_dir = Path(run_dir)
    now = now or datetime.datetime.now()
    bin_folder = f"{BIN_PREFIX}{now:%Y%m%d-%H%M%S}_{os.getpid()}"
    checkpoints = [*list_checkpoints(run_dir).values(), run_dir / INTERRUPT, run_dir / BEST]
    names = [path.name for path in checkpoints] + [state_path(path).name for path in checkpoints]
    names += [*RECORDS, ABANDONED_DIR]
    moves = tuple(
        (name, f"{bin_folder}/{name}")
        for name in names
        if (run_dir / name).exists() or (run_dir / name).is_symlink()
    )
    change = RunChange("clear", moves=moves, latest=None, deletions=(bin_folder,))
    check_room(run_dir, change)
    carry_out(run_dir, change)
