"""Where a training run starts, and what going back leaves behind (no Keras here).

A run directory holds one branch of training: its epoch checkpoints, its
interrupt, its best checkpoint, history and config all lead to the weights the
next `--resume` continues from. Going back to an earlier checkpoint
(`--start_epoch N`, `--model PATH`) moves what came after it into
`abandoned/<time>_after_epoch_N/`, so that nothing of an abandoned branch is
loaded again unless the user names it.

The decision (`resolve_start`, `config_for_start`) writes nothing; the moves
(`apply_start`) come only once everything the run needs has been checked.
"""

import dataclasses
import datetime
import os
import shutil
from pathlib import Path

from pipeline.errors import UserError
from pipeline.history import load_history, write_history
from pipeline.learning_rate import (
    Position,
    RateChange,
    rate_changes,
    with_change,
    with_changes_up_to,
)
from pipeline.run_dir import (
    ABANDONED_DIR,
    BEST,
    CONFIG_FILE,
    CSV_FILE,
    HISTORY_FILE,
    INTERRUPT,
    LATEST,
    PLOT_FILE,
    RECORDS,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    point_latest,
    read_json,
    read_state,
    state_path,
)


@dataclasses.dataclass(frozen=True)
class StartRequest:
    """What the command line asked for; `script` names the command in advice."""

    resume: bool = False
    start_epoch: int | None = None
    model_path: Path | None = None
    overwrite: bool = False
    script: str = "train.py"


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
    """Decide what to start from. Writes nothing; every refusal names a command that works."""
    run_dir = Path(run_dir)
    if request.resume and (request.start_epoch is not None or request.model_path):
        raise UserError(
            "--resume continues from the latest checkpoint; --start_epoch and --model choose "
            "another: give one of them"
        )
    if request.resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise UserError(_nothing_to_resume(run_dir, request.script))
        return _start_from(checkpoint, read_state(checkpoint))
    if request.start_epoch is not None and request.start_epoch < 0:
        raise UserError(f"--start_epoch must be >= 0, got {request.start_epoch}")
    if request.model_path is not None:
        return _start_from_model(Path(request.model_path), request.start_epoch)
    if request.start_epoch:
        return _start_from_epoch(run_dir, request.start_epoch, request.script)
    if request.start_epoch == 0 and not request.overwrite and _holds_a_run(run_dir):
        raise UserError(
            f"--start_epoch 0 starts {run_dir} over: add --overwrite to replace its run"
        )
    if _holds_a_run(run_dir):
        if not request.overwrite:
            raise UserError(_already_used(run_dir, request.script))
        return StartPoint(None, clear=True)
    return StartPoint(None)


def _holds_a_run(run_dir: Path) -> bool:
    names = [*RECORDS, INTERRUPT, BEST]
    return bool(list_checkpoints(run_dir)) or any((run_dir / name).exists() for name in names)


def start_over_command(run_dir: Path, script: str) -> str:
    """The command that starts a run over with the settings it had (its config.json)."""
    command = f"python {script} --checkpoints {run_dir} --overwrite"
    if (run_dir / CONFIG_FILE).is_file():
        command += f" --config {run_dir / CONFIG_FILE}"
    return command


def _nothing_to_resume(run_dir: Path, script: str) -> str:
    if _holds_a_run(run_dir):
        return (
            f"nothing to resume in {run_dir}: its run saved no checkpoint; start it over with: "
            f"{start_over_command(run_dir, script)}"
        )
    return (
        f"nothing to resume in {run_dir}: no run there yet; start one with: "
        f"python {script} --checkpoints {run_dir}"
    )


def _already_used(run_dir: Path, script: str) -> str:
    epochs = list(list_checkpoints(run_dir))
    command = f"python {script} --checkpoints {run_dir}"
    if latest_checkpoint(run_dir) is None:
        return (
            f"{run_dir} holds the records of a run that saved no checkpoint (nothing to "
            f"resume); start it over with: {start_over_command(run_dir, script)}, or choose "
            f"another --checkpoints"
        )
    choices = [f"continue it with: {command} --resume"]
    if epochs:
        choices.append(f"go back with --start_epoch {epochs[-1]}")
    return (
        f"{run_dir} already holds a run (checkpoints after epochs "
        f"{', '.join(map(str, epochs)) or 'none'}); {'; '.join(choices)}; or start over "
        f"with --overwrite, or choose another --checkpoints"
    )


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


def _start_from_epoch(run_dir: Path, epoch: int, script: str) -> StartPoint:
    existing = list_checkpoints(run_dir)
    if epoch in existing:
        return _start_from(existing[epoch], read_state(existing[epoch]), rewind=True)
    available = ", ".join(str(number) for number in existing) or "none"
    message = (
        f"no checkpoint after epoch {epoch} in {run_dir} (epochs with checkpoints: {available})"
    )
    set_aside = sorted((run_dir / ABANDONED_DIR).glob(f"*/{checkpoint_path('', epoch).name}"))
    if set_aside:
        return_command = f"--model {set_aside[-1]} --start_epoch {epoch}"
        raise UserError(
            f"{message}; the abandoned branch in {set_aside[-1].parent} has one: go back to "
            f"it with: python {script} --checkpoints {run_dir} {return_command}"
        )
    if existing:
        raise UserError(
            f"{message}; pick one of those with --start_epoch, or continue with --resume"
        )
    raise UserError(f"{message}; start the run with: python {script} --checkpoints {run_dir}")


def check_epochs(start: StartPoint, epochs: int, run_dir: Path, script: str) -> None:
    """A start must leave something to train."""
    if start.checkpoint is None or start.epoch < epochs:
        return
    message = (
        f"{start.checkpoint} is after epoch {start.epoch} and training.epochs is {epochs}: "
        f"nothing left to train"
    )
    if start.checkpoint == latest_checkpoint(run_dir):
        more = start.epoch + max(10, start.epoch // 2)
        raise UserError(
            f"{message}; train on with: python {script} --checkpoints {run_dir} --resume "
            f"--epochs {more}"
        )
    raise UserError(f"{message}; add --epochs N with N > {start.epoch}")


def check_workers_agree(start: StartPoint, distribution, batch_size: int, run_dir=None) -> None:
    """Workers resume on their own copies of the run: all must start from one position,
    and a mid-epoch position needs the worker count and batch size that split that
    epoch. The collective comparison comes first, so that all workers raise together."""
    epochs = list_checkpoints(run_dir) if run_dir else {}
    earlier = [epoch for epoch in epochs if epoch <= start.epoch]
    instead = (
        f"or go back to the last epoch checkpoint before it with --start_epoch {earlier[-1]}"
        if earlier
        else "or start over with --overwrite"
    )
    position = (start.epoch, start.batch, start.workers, start.batch_size or batch_size)
    if not distribution.same_on_every_process(position):
        raise UserError(
            f"the workers start from different points (this one: epoch {start.epoch}, "
            f"batch {start.batch}, from {start.checkpoint}); resume every worker alike"
        )
    if start.batch and start.workers != distribution.process_count:
        raise UserError(
            f"{start.checkpoint} stopped mid-epoch with {start.workers} worker(s), this run "
            f"has {distribution.process_count}: resume with as many, {instead}"
        )
    if start.batch and start.batch_size != batch_size:
        raise UserError(
            f"{start.checkpoint} stopped after batch {start.batch} of batch size "
            f"{start.batch_size}, not {batch_size}: resume mid-epoch with --set "
            f"training.batch_size={start.batch_size}, {instead}"
        )


def recorded_training(run_dir: Path, start: StartPoint) -> dict | None:
    """The training section the run was doing when it reached the start point: the run
    directory's config.json for its own checkpoints, the checkpoint's state otherwise."""
    own = start.checkpoint is not None and _inside(start.checkpoint, run_dir)
    config_file = Path(run_dir) / CONFIG_FILE
    if own and config_file.is_file():
        return read_json(config_file).get("training")
    return start.state.get("config", {}).get("training")


def config_for_start(config, run_dir: Path, start: StartPoint, learning_rate: float | None):
    """The config the run trains with from the start point, and notes for the log.

    Resuming keeps the run's --lr changes made up to the start point (a plain --resume
    after --resume --lr 0.01 goes on at the rate that change gave) and records a new
    --lr as a change at the start point. A fresh start with --lr starts there.
    """
    training, notes = config.training, []
    if start.checkpoint is None:
        if learning_rate is not None:
            training = dataclasses.replace(training, learning_rate=learning_rate)
        return dataclasses.replace(config, training=training), notes
    recorded = recorded_training(run_dir, start)
    if recorded is not None:
        kept = tuple(recorded.get("rate_changes", ()))
        if training.rate_changes and tuple(training.rate_changes) != kept:
            notes.append("training.rate_changes of the config given are replaced by the run's")
        training = dataclasses.replace(training, rate_changes=kept)
        _refuse_new_initial_rate(training, recorded, start)
    training = with_changes_up_to(training, start.position)
    if learning_rate is not None:
        training = with_change(training, RateChange(start.epoch, start.batch, learning_rate))
    epoch_in_name = read_state(start.checkpoint).get("epoch")
    if start.rewind and epoch_in_name not in (None, start.epoch):
        notes.append(
            f"{start.checkpoint} was saved after epoch {epoch_in_name}; --start_epoch counts it "
            f"as after epoch {start.epoch}"
        )
    return dataclasses.replace(config, training=training), notes


def _refuse_new_initial_rate(training, recorded: dict, start: StartPoint) -> None:
    """Changing the starting rate of a run after an --lr change would change nothing
    (the change anchors the rate); say how to change it instead."""
    before = recorded.get("learning_rate")
    changes = [change for change in rate_changes(training) if change.position <= start.position]
    if before is None or before == training.learning_rate or not changes:
        return
    raise UserError(
        f"training.learning_rate is the rate this run started at ({before:g}); after its "
        f"--lr {changes[-1].rate:g} it no longer sets the rate: resume with --lr "
        f"{training.learning_rate:g} to train at that rate from here"
    )


def config_differences(before: dict, after: dict, prefix: str = "") -> list[str]:
    """'key: old -> new' for every value that differs between two saved configs."""
    lines = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key != "spec":
            lines += config_differences(old, new, f"{prefix}{key}.")
        elif old != new and not (isinstance(old, list | tuple) and list(old) == list(new or [])):
            lines.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return lines


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
    """Go back to `start`: latest.json names it first (a crash half-way never sends a
    --resume to the abandoned branch), then what came after it moves aside, then the
    history is cut to the epochs that led to it."""
    own = _inside(start.checkpoint, run_dir)
    if own:
        point_latest(run_dir, start.checkpoint)
    else:
        (run_dir / LATEST).unlink(missing_ok=True)
    later = _after(run_dir, start, own)
    logged_epochs = len(load_history(run_dir, 10**9).get("epoch", []))
    # From elsewhere, the whole history here belongs to the abandoned branch.
    history_abandoned = logged_epochs > (start.epoch if own else 0)
    folder = None
    if later or history_abandoned:
        folder = _new_abandoned_folder(run_dir, start, now)
        for path in later:
            os.replace(path, folder / path.name)
            sidecar = state_path(path)
            if sidecar.exists():
                os.replace(sidecar, folder / sidecar.name)
        for name in (HISTORY_FILE, CSV_FILE, PLOT_FILE, CONFIG_FILE):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, folder / name)
    if folder or not own:
        # The history of the epochs that led to the checkpoint, from its own run.
        history = load_history(run_dir if own else start.checkpoint.parent, start.epoch)
        for name in (HISTORY_FILE, CSV_FILE, PLOT_FILE):
            (run_dir / name).unlink(missing_ok=True)
        if history:
            write_history(run_dir, history)
    return folder


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
    base = f"{now:%Y%m%d-%H%M%S}_after_epoch_{start.epoch:04d}"
    folder = run_dir / ABANDONED_DIR / base
    number = 1
    while folder.exists():
        number += 1
        folder = run_dir / ABANDONED_DIR / f"{base}_{number}"
    folder.mkdir(parents=True)
    return folder


def _inside(path: Path, run_dir: Path) -> bool:
    return Path(path).resolve().parent == Path(run_dir).resolve()


def clear_run(run_dir: Path) -> None:
    """Delete a run's checkpoints, their states and its records (for --overwrite); the
    abandoned branches of the run go too."""
    run_dir = Path(run_dir)
    checkpoints = [*list_checkpoints(run_dir).values(), run_dir / INTERRUPT, run_dir / BEST]
    for path in checkpoints:
        path.unlink(missing_ok=True)
        state_path(path).unlink(missing_ok=True)
    for name in RECORDS:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / ABANDONED_DIR, ignore_errors=True)
