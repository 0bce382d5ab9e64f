"""Reading a run directory as it stands: a change of it that a crash cut short is
finished first (`settle_run_dir`), then latest.json leads to the checkpoint to go on
from (`latest_checkpoint`). No Keras here."""

import contextlib
import fcntl
from pathlib import Path

from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.json_files import read_json
from pipeline.runs.run_change import PENDING, finish_pending_change
from pipeline.runs.run_dir import LATEST, LOCK_FILE, list_checkpoints, warn


def latest_checkpoint(run_dir) -> Path | None:
    """The checkpoint latest.json points at, else the newest epoch checkpoint, else None.

    A damaged latest.json, or a damaged state of the checkpoint it leads to, is a
    one-line error naming the file: passing over it would resume (or score) an older
    checkpoint without a word, losing what the damaged file pointed to. A latest.json
    naming a checkpoint that is gone falls back to the newest one, with a warning.
    """
    run_dir = Path(run_dir)
    settle_run_dir(run_dir)
    pointer = run_dir / LATEST
    if pointer.is_file():
        candidate = _pointed_checkpoint(run_dir, pointer)
        if candidate is not None:
            read_state(candidate)  # a damaged state: one line naming it
            return candidate
    checkpoints = list(list_checkpoints(run_dir).values())
    if not checkpoints:
        return None
    read_state(checkpoints[-1])
    return checkpoints[-1]


def settle_run_dir(run_dir: Path, locked: bool = False) -> None:
    """Finish a multi-file change of the run directory cut short (a rewind or an
    --overwrite killed half-way), so that what is read next is its new state.

    Only under the run's lock (`locked`: the caller holds it): a reader takes it for
    the moment, and where a training run holds it, that run finishes the change itself
    and the reader reads the directory as it is."""
    run_dir = Path(run_dir)
    if not (run_dir / PENDING).is_file():
        return
    try:
        if locked:
            finish_pending_change(run_dir)
            return
        with _lock_if_free(run_dir) as free:
            if free:
                finish_pending_change(run_dir)
    except OSError as error:  # a read-only copy of a run: read it as it is
        warn(f"could not finish the change pending in {run_dir} ({error}); reading it as is")


@contextlib.contextmanager
def _lock_if_free(run_dir: Path):
    """The run's lock, if no training run holds it: yields whether it was taken. A lock
    file made for the moment goes again, as training's does."""
    path = run_dir / LOCK_FILE
    made = not path.exists()
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            if made:
                path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pointed_checkpoint(run_dir: Path, pointer: Path) -> Path | None:
    """The checkpoint latest.json names: a file of this run directory, by name only
    (None, with a warning: it is gone)."""
    name = read_json(pointer).get("checkpoint")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".keras"):
        raise UserError(
            f"{pointer} is damaged: checkpoint must name a .keras file of {run_dir}, got "
            f"{str(name)[:60]!r}; move it away to use the newest epoch checkpoint"
        )
    candidate = run_dir / name
    if not candidate.is_file():
        warn(f"{pointer} names {name}, which is not there; using the newest checkpoint")
        return None
    return candidate
