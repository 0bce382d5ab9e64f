"""Changes of a run directory that touch many files, as transactions (no Keras here).

Going back to a checkpoint (a rewind) moves the later branch aside, copies the
records, cuts the history and points latest.json; `--overwrite` moves a whole run
into the bin. Done one file at a time, a failure half-way (a full disk, kill -9)
would leave latest.json at the rewind point beside the old branch's checkpoints,
which the next `--resume` would overwrite. So each change is:

1. planned, with every precondition checked (nothing written);
2. written down whole in `change.pending.json` (the intent);
3. carried out, every step idempotent;
4. committed by deleting the intent.

Any later start, and every reader of the run (`latest_checkpoint`), first finishes a
pending change (`finish_pending_change`): it sees the old state or the new one.
The intent file is read back as untrusted input: every path in it must name a
file inside the run directory.
"""

import dataclasses
import os
import shutil
from pathlib import Path

from pipeline.datasets.hdf5_commit import fsync_directory
from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import point_latest
from pipeline.runs.json_files import read_json, write_json_atomically
from pipeline.runs.run_dir import CSV_FILE, HISTORY_FILE, LATEST, PLOT_FILE

PENDING = "change.pending.json"
# The only folders a change deletes: the bin of an --overwrite, at the top of the run.
BIN_PREFIX = ".overwritten_"
# An intent larger than this is not one this code wrote.
MAX_PENDING_BYTES = 16 * 1024 * 1024
# Room kept free beyond the copies themselves (the intent, the history rewritten).
SPARE_BYTES = 4 * 1024 * 1024
# Called with each step's number before it is taken (tests inject a kill there).
step_hook = None


@dataclasses.dataclass(frozen=True)
class RunChange:
    """What a change does, in run-directory-relative names."""

    kind: str  # "rewind" or "clear"
    copies: tuple[tuple[str, str], ...] = ()
    moves: tuple[tuple[str, str], ...] = ()
    # latest.json after the change: a checkpoint's name, or None (removed).
    latest: str | None = None
    # The history after the change: the first `history_epochs` epochs of the history in
    # `history_from` (a folder; relative to the run directory, or absolute for another
    # run's); None: the history is left as it is.
    history_from: str | None = None
    history_epochs: int = 0
    # Folders deleted last (the bin of --overwrite).
    deletions: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def carry_out(run_dir: Path, change: RunChange) -> None:
    """Write the intent, carry the change out, commit. The caller has checked the
    preconditions (`check_room`)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _step(0)
    write_json_atomically(run_dir / PENDING, change.to_dict())
    _apply(run_dir, change)


def finish_pending_change(run_dir) -> None:
    """Finish a change whose intent was written but not committed (a crash half-way).
    The caller holds the run's lock: a change is carried out by one process at a time."""
    run_dir = Path(run_dir)
    path = run_dir / PENDING
    if not path.is_file():
        return
    change = read_change(path)
    _check_paths_inside(run_dir, change)
    _apply(run_dir, change)


def _check_paths_inside(run_dir: Path, change: RunChange) -> None:
    """Every file the change touches lies inside the run directory once links are
    resolved (a forged intent in a run whose `abandoned` links to a home folder would
    otherwise move or delete files there)."""
    root = run_dir.resolve()
    names = [name for pair in change.copies + change.moves for name in pair]
    names += list(change.deletions) + ([change.latest] if change.latest else [])
    for name in names:
        folder = (run_dir / name).parent.resolve()
        if folder != root and root not in folder.parents:
            raise UserError(
                f"{run_dir / PENDING} is damaged: {name} leads outside {run_dir}; move it "
                f"away and check the run directory by hand"
            )


def read_change(path: Path) -> RunChange:
    """The intent file, checked as untrusted input: one line naming it when damaged."""
    damaged = f"{path} is damaged; move it away and check the run directory by hand"
    try:
        if path.stat().st_size > MAX_PENDING_BYTES:
            raise UserError(f"{damaged} (larger than {MAX_PENDING_BYTES} bytes)")
        values = read_json(path)
        change = RunChange(
            kind=_text(values["kind"]),
            copies=tuple(_pair(item) for item in values["copies"]),
            moves=tuple(_pair(item) for item in values["moves"]),
            latest=None if values["latest"] is None else _name(values["latest"]),
            history_from=_history_source(values["history_from"]),
            history_epochs=_count(values["history_epochs"]),
            deletions=tuple(_bin(item) for item in values["deletions"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as error:
        raise UserError(f"{damaged} ({type(error).__name__})") from None
    if change.kind not in ("rewind", "clear"):
        raise UserError(f"{damaged} (kind {change.kind!r})")
    return change


def check_room(run_dir: Path, change: RunChange) -> None:
    """Preconditions, before anything is written: every destination folder can be made,
    and the disk holds the copies."""
    run_dir = Path(run_dir)
    for _source, destination in change.moves + change.copies:
        for folder in reversed((run_dir / destination).parents):
            if folder.exists() and not folder.is_dir():
                raise UserError(
                    f"{folder} is not a folder, so the run's files cannot move into it; "
                    f"move it away and retry"
                )
    needed = sum(_size(run_dir / source) for source, _ in change.copies) + SPARE_BYTES
    history = run_dir / HISTORY_FILE
    needed += 2 * _size(history)
    existing = next(folder for folder in (run_dir, *run_dir.parents) if folder.exists())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise UserError(
            f"no space left for the {change.kind} in {run_dir} (needs {needed} bytes, "
            f"{free} free); free some space and retry: nothing was changed"
        )


def _apply(run_dir: Path, change: RunChange) -> None:
    """Carry the change out; every step can be taken again after a crash."""
    from pipeline.runs.history import load_history, write_history  # plots: loaded when needed

    step = 1
    if change.latest is not None:
        _step(step)
        point_latest(run_dir, run_dir / change.latest)
    else:
        (run_dir / LATEST).unlink(missing_ok=True)
    for source, destination in change.copies:
        step += 1
        _step(step)
        _copy_once(run_dir / source, run_dir / destination)
    for source, destination in change.moves:
        step += 1
        _step(step)
        _move_once(run_dir / source, run_dir / destination)
    if change.history_from is not None:
        _step(step + 1)
        history = load_history(run_dir / change.history_from, change.history_epochs)
        for name in (HISTORY_FILE, CSV_FILE, PLOT_FILE):
            (run_dir / name).unlink(missing_ok=True)
        if history:
            write_history(run_dir, history)
    for folder in change.deletions:
        _step(step + 2)
        shutil.rmtree(run_dir / folder, ignore_errors=True)
    _step(step + 3)
    (run_dir / PENDING).unlink(missing_ok=True)
    fsync_directory(run_dir)


def _copy_once(source: Path, destination: Path) -> None:
    """Copy under a temporary name, then rename: a copy is whole or absent."""
    if destination.exists() or not source.is_file():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    try:
        shutil.copy2(source, temporary)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def _move_once(source: Path, destination: Path) -> None:
    if not source.exists() and not source.is_symlink():
        return  # moved before a crash, or by another reader finishing the change
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, destination)
    except FileNotFoundError:
        if not destination.exists():
            raise


def _step(number: int) -> None:
    if step_hook is not None:
        step_hook(number)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


# Readers of the intent: each returns a checked value or raises TypeError/ValueError.
def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def _count(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("not a count")
    return value


def _inside(value) -> str:
    """A path relative to the run directory that stays inside it."""
    text = _text(value)
    parts = Path(text).parts
    if not parts or Path(text).is_absolute() or ".." in parts or "\0" in text:
        raise ValueError(f"{text!r} leaves the run directory")
    return text


def _bin(value) -> str:
    """A folder a change may delete: only the bin of an --overwrite, at the top."""
    text = _name(value)
    if not text.startswith(BIN_PREFIX):
        raise ValueError(f"{text!r} is not the bin of an --overwrite")
    return text


def _name(value) -> str:
    text = _inside(value)
    if Path(text).name != text:
        raise ValueError(f"{text!r} is not a file of the run directory")
    return text


def _pair(value) -> tuple[str, str]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("not a pair")
    return (_inside(value[0]), _inside(value[1]))


def _history_source(value) -> str | None:
    """Relative (this run's copy) or absolute (the run a checkpoint came from)."""
    if value is None:
        return None
    text = _text(value)
    return text if Path(text).is_absolute() and "\0" not in text else _inside(text)
