"""Where a training run starts (no Keras here).

A run directory holds one branch of training: its epoch checkpoints, its
interrupt, its best checkpoint, history and config all lead to the weights the
next `--resume` continues from. A start continues that branch, goes back to an
earlier checkpoint, or starts over; every refusal names a command that works.

The decision (`resolve_start`, `config_for_start` in pipeline/runs/start_config.py)
writes nothing; the moves (`apply_start` in pipeline/runs/rewind.py) come only once
everything the run needs has been checked.
"""

import dataclasses
from pathlib import Path

from pipeline.advice import Invocation
from pipeline.config import TrainingConfig, config_from_dict
from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.json_files import read_json
from pipeline.runs.learning_rate import Position, rate_at
from pipeline.runs.run_dir import (
    ABANDONED_DIR,
    BEST,
    CONFIG_FILE,
    INTERRUPT,
    RECORDS,
    checkpoint_path,
    list_checkpoints,
)
from pipeline.runs.run_reading import latest_checkpoint, settle_run_dir


@dataclasses.dataclass(frozen=True)
class StartRequest:
    """What the command line asked for; `script` names the command in advice."""

    resume: bool = False
    start_epoch: int | None = None
    model_path: Path | None = None
    overwrite: bool = False
    # The command as the user gave it: refusals advise it with what must change.
    invocation: Invocation = Invocation()


@dataclasses.dataclass(frozen=True)
class StartPoint:
    """Where training starts: a checkpoint (None: fresh weights) and its position."""

    checkpoint: Path | None
    epoch: int = 0  # completed epochs
    batch: int = 0  # batches already done in the next epoch (a mid-epoch interrupt)
    # The batch size the position was counted in (from the checkpoint's config).
    batch_size: int | None = None
    # The interrupted epoch's metric sums, restored when it resumes.
    metric_states: tuple = ()
    # The number of workers that trained it (the shards of a mid-epoch position).
    workers: int = 1
    # Going back (--start_epoch, --model): what came after the checkpoint is set aside.
    rewind: bool = False
    # A fresh start in a used run directory (--overwrite): its run is deleted.
    clear: bool = False
    # The checkpoint's saved state: its config and the plateau counters.
    state: dict = dataclasses.field(default_factory=dict)

    @property
    def position(self) -> Position:
        return (self.epoch, self.batch)


def describe_start(start: StartPoint) -> str:
    """Where a start point is, numbered as Keras' progress line numbers epochs."""
    if start.checkpoint is None:
        return "fresh weights"
    if start.batch:
        return f"{start.checkpoint} (epoch {start.epoch + 1} resumes at batch {start.batch + 1})"
    return f"{start.checkpoint} (after epoch {start.epoch}, epoch {start.epoch + 1} next)"


def resolve_start(run_dir: Path, request: StartRequest) -> StartPoint:
    """Decide what to start from; every refusal names a command that works. Writes
    nothing, but finishes a change of the run directory that a crash cut short."""
    run_dir = Path(run_dir)
    settle_run_dir(run_dir, locked=True)
    if request.resume and (request.start_epoch is not None or request.model_path):
        raise UserError(
            "--resume continues from the latest checkpoint; --start_epoch and --model choose "
            "another: give one of them"
        )
    if request.resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise UserError(_nothing_to_resume(run_dir, request.invocation))
        return _start_from(checkpoint, read_state(checkpoint))
    if request.start_epoch is not None and request.start_epoch < 0:
        raise UserError(f"--start_epoch must be >= 0, got {request.start_epoch}")
    if request.model_path is not None:
        return _start_from_model(Path(request.model_path), request.start_epoch)
    if request.start_epoch:
        return _start_from_epoch(run_dir, request.start_epoch, request.invocation)
    if request.start_epoch == 0 and not request.overwrite and _holds_a_run(run_dir):
        raise UserError(
            f"--start_epoch 0 starts {run_dir} over, replacing its run: "
            f"{request.invocation.command(overwrite=True)}"
        )
    if _holds_a_run(run_dir):
        if not request.overwrite:
            raise UserError(_already_used(run_dir, request.invocation))
        return StartPoint(None, clear=True)
    return StartPoint(None)


def _holds_a_run(run_dir: Path) -> bool:
    names = [*RECORDS, INTERRUPT, BEST]
    return bool(list_checkpoints(run_dir)) or any((run_dir / name).exists() for name in names)


def start_over_command(run_dir: Path, invocation: Invocation) -> str:
    """The command that starts a run over with the settings it had: the --config given,
    else the run's own config.json (its --set overrides already applied there)."""
    if invocation.config is None and (run_dir / CONFIG_FILE).is_file():
        # The run's own settings, without the --lr changes it made on the way: started
        # over, they would apply from the start at those positions.
        invocation = dataclasses.replace(
            invocation,
            config=str(run_dir / CONFIG_FILE),
            overrides=("training.rate_changes=[]",),
        )
    return invocation.command(resume=False, overwrite=True)


def _nothing_to_resume(run_dir: Path, invocation: Invocation) -> str:
    if _holds_a_run(run_dir):
        return (
            f"nothing to resume in {run_dir}: its run saved no checkpoint; start it over with: "
            f"{start_over_command(run_dir, invocation)}"
        )
    return (
        f"nothing to resume in {run_dir}: no run there yet; start one with: "
        f"{invocation.command(resume=False)}"
    )


def _already_used(run_dir: Path, invocation: Invocation) -> str:
    epochs = list(list_checkpoints(run_dir))
    if latest_checkpoint(run_dir) is None:
        return (
            f"{run_dir} holds the records of a run that saved no checkpoint (nothing to "
            f"resume); start it over with: {start_over_command(run_dir, invocation)}, or "
            f"choose another --checkpoints"
        )
    latest = read_state(latest_checkpoint(run_dir))
    position = (latest["epoch"], latest["batch"])
    recorded = _recorded_training_config(run_dir)
    total = invocation.epochs or (recorded.epochs if recorded else None)
    more = {}
    if total is not None and position[0] >= total:  # finished: continuing needs more
        more = {"epochs": position[0] + max(10, position[0] // 2)}
        # A decay that reached 0 goes on from the rate of its last epoch.
        decayed = recorded and position[0] and rate_at(recorded, position[0], 0, 1) == 0
        if invocation.lr is None and decayed:
            more["lr"] = rate_at(recorded, position[0] - 1, 0, 1)
    choices = [f"continue it with: {invocation.command(resume=True, **more)}"]
    earlier = [epoch for epoch in epochs if (epoch, 0) < position]
    if earlier:
        choices.append(f"go back with: {invocation.command(start_epoch=earlier[-1])}")
    return (
        f"{run_dir} already holds a run (checkpoints after epochs "
        f"{', '.join(map(str, epochs)) or 'none'}); {'; '.join(choices)}; or start over with: "
        f"{invocation.command(overwrite=True)}; or choose another --checkpoints"
    )


def _recorded_training_config(run_dir: Path):
    """The training section of the run's config.json, as a config (None: none that
    reads; advice then goes without it)."""
    try:
        training = read_json(run_dir / CONFIG_FILE).get("training")
    except (UserError, OSError):
        return None
    return as_training_config(training, run_dir / CONFIG_FILE)


def as_training_config(values, source: Path):
    """A recorded training section as a config; None where it no longer reads (written
    by another version, or damaged): what builds on it then goes without it."""
    try:
        return config_from_dict(TrainingConfig, values, source=str(source))
    except (UserError, AttributeError, TypeError):
        return None


def _start_from(checkpoint: Path, state: dict, **changes) -> StartPoint:
    batch_size = state.get("config", {}).get("training", {}).get("batch_size")
    metric_states = tuple(state.get("metric_states", ())) if state["batch"] else ()
    workers = int(state.get("workers", 1))
    return StartPoint(
        checkpoint,
        state["epoch"],
        state["batch"],
        batch_size,
        metric_states,
        workers,
        state=state,
        **changes,
    )


def _start_from_model(model_path: Path, start_epoch: int | None) -> StartPoint:
    if not model_path.is_file():
        raise UserError(f"--model {model_path} does not exist")
    state = read_state(model_path)
    if start_epoch is not None:
        # The reference's `--model epoch_40 --start_epoch 40`: the count the user names.
        state = {**state, "epoch": start_epoch, "batch": 0}
    return _start_from(model_path, state, rewind=True)


def _start_from_epoch(run_dir: Path, epoch: int, invocation: Invocation) -> StartPoint:
    existing = list_checkpoints(run_dir)
    if epoch in existing:
        return _start_from(existing[epoch], read_state(existing[epoch]), rewind=True)
    available = ", ".join(str(number) for number in existing) or "none"
    message = (
        f"no checkpoint after epoch {epoch} in {run_dir} (epochs with checkpoints: {available})"
    )
    set_aside = sorted((run_dir / ABANDONED_DIR).glob(f"*/{checkpoint_path('', epoch).name}"))
    if set_aside:
        return_command = invocation.command(model=str(set_aside[-1]), start_epoch=epoch)
        raise UserError(
            f"{message}; the abandoned branch in {set_aside[-1].parent} has one: go back to "
            f"it with: {return_command}"
        )
    if existing:
        raise UserError(
            f"{message}; pick one of those with --start_epoch, or continue with: "
            f"{invocation.command(resume=True)}"
        )
    raise UserError(f"{message}; start the run with: {invocation.command(start_epoch=None)}")
