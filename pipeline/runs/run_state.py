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
from pathlib import Path

from pipeline.advice import Invocation
from pipeline.config import TrainingConfig, config_from_dict
from pipeline.errors import UserError
from pipeline.runs.history import load_history
from pipeline.runs.learning_rate import (
    Position,
    RateNeeded,
    continue_rate,
    rate_at,
    rate_changes,
    with_changes_up_to,
)
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
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    read_json,
    read_state,
    settle_run_dir,
    state_path,
)


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
    return _as_training_config(training, run_dir / CONFIG_FILE)


def _as_training_config(values, source: Path):
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


def check_epochs(start: StartPoint, training, run_dir: Path, invocation: Invocation) -> None:
    """A start must leave something to train; the advice trains on without a jump in the
    rate (a curve that reached 0 goes on from the rate of its last epoch)."""
    if start.checkpoint is None or start.epoch < training.epochs:
        return
    message = (
        f"{start.checkpoint} is after epoch {start.epoch} and training.epochs is "
        f"{training.epochs}: nothing left to train"
    )
    more = start.epoch + max(10, start.epoch // 2)
    # Batch 0 positions do not depend on the batches per epoch (multistep in iterations
    # aside, which never decays to 0).
    end_rate = rate_at(training, start.epoch, 0, 1)
    lr = invocation.lr
    if lr is None and end_rate == 0 and start.epoch:
        lr = rate_at(training, start.epoch - 1, 0, 1)
    if start.checkpoint == latest_checkpoint(run_dir):
        command = invocation.command(resume=True, epochs=more, lr=lr)
        raise UserError(f"{message}; train on with: {command}")
    raise UserError(f"{message}; train on with: {invocation.command(epochs=more, lr=lr)}")


def check_position_inside_epoch(start: StartPoint, batches_per_epoch: int) -> None:
    """A mid-epoch position names a batch inside the epoch (a damaged or forged state
    could say a million)."""
    if start.batch >= batches_per_epoch:
        raise UserError(
            f"{state_path(start.checkpoint)} says {start.batch} batches of epoch "
            f"{start.epoch + 1} were done, but an epoch has {batches_per_epoch}: it is "
            f"damaged; move it away, or go back to an epoch checkpoint with --start_epoch"
        )


def check_changes_inside_epochs(training, batches_per_epoch: int, source: str) -> None:
    """A recorded change names a batch inside its epoch: `batch` counts the batches done
    in it, 0 .. batches_per_epoch - 1 (one beyond would train a later epoch at a rate
    rescaled from a position that never came)."""
    for change in rate_changes(training):
        if change.batch >= batches_per_epoch:
            raise UserError(
                f"training.rate_changes entry {change.to_dict()!r} in {source}: batch "
                f"{change.batch} lies beyond epoch {change.epoch + 1}, which has "
                f"{batches_per_epoch} batches (batch counts those done, 0 to "
                f"{batches_per_epoch - 1}); correct or remove the entry"
            )


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
    values = read_json(config_file) if own and config_file.is_file() else start.state
    if own and config_file.is_file():
        section = values.get("training") if isinstance(values, dict) else None
    else:
        config = values.get("config") if isinstance(values, dict) else None
        section = config.get("training") if isinstance(config, dict) else None
    return section if isinstance(section, dict) else None


def _recorded_config(run_dir: Path, start: StartPoint):
    """The recorded training section as a config (None: none, or one that no longer
    reads; the rate rule then has nothing to continue from)."""
    recorded = recorded_training(run_dir, start)
    return None if recorded is None else _as_training_config(recorded, run_dir / CONFIG_FILE)


def config_for_start(config, run_dir: Path, start: StartPoint, config_given: bool = False):
    """The config the run trains with from the start point, and notes for the log.

    Resuming keeps the run's --lr changes made up to the start point (a plain --resume
    after --resume --lr 0.01 goes on at the rate that change gave); the rate at the
    start itself is settled by `config_with_rate`, once the data says how many batches
    an epoch has. `config_given`: the user gave the config (--config, or --set of
    training.rate_changes), whose changes the run's record then replaces (noted).
    """
    training, notes = config.training, []
    if start.checkpoint is None:
        return config, notes
    recorded = recorded_training(run_dir, start)
    if recorded is not None:
        kept = recorded.get("rate_changes", ())
        if not isinstance(kept, list | tuple):
            raise UserError(
                f"the record of {start.checkpoint}'s run is damaged: training.rate_changes "
                f"must be a list, got {str(kept)[:40]!r} ({run_dir / CONFIG_FILE} or the "
                f"checkpoint's state); move it away"
            )
        kept = tuple(kept)
        if config_given and training.rate_changes and tuple(training.rate_changes) != kept:
            notes.append("training.rate_changes of the config given are replaced by the run's")
        training = dataclasses.replace(training, rate_changes=kept)
    training = with_changes_up_to(training, start.position)
    epoch_in_name = read_state(start.checkpoint).get("epoch")
    if start.rewind and epoch_in_name not in (None, start.epoch):
        notes.append(
            f"{start.checkpoint} was saved after epoch {epoch_in_name}; --start_epoch counts it "
            f"as after epoch {start.epoch}"
        )
    return dataclasses.replace(config, training=training), notes


def config_with_rate(config, run_dir: Path, start: StartPoint, learning_rate, batches_per_epoch,
                     invocation: Invocation):  # fmt: skip
    """The config with the rate of the start settled (pipeline.runs.learning_rate.continue_rate):
    --lr if given, else the rate the run had, the rest of the curve rescaled to it.
    Returns the config and the change made at the start (None: none)."""
    training = config.training
    if start.checkpoint is None:
        if learning_rate is not None:
            training = dataclasses.replace(training, learning_rate=learning_rate)
        return dataclasses.replace(config, training=training), None
    recorded = _recorded_config(run_dir, start)
    if recorded is not None and learning_rate is None:
        _refuse_new_initial_rate(training, recorded, start, invocation)
    try:
        training, change = continue_rate(
            recorded, training, start.position, learning_rate, batches_per_epoch
        )
    except RateNeeded as needed:
        raise UserError(_rate_needed(needed, start, invocation)) from None
    return dataclasses.replace(config, training=training), change


def _rate_needed(needed: RateNeeded, start: StartPoint, invocation: Invocation) -> str:
    changed = ", ".join(
        f"training.{key} {old!r} -> {new!r}" for key, (old, new) in needed.changed.items()
    )
    last = needed.last_rate
    advice = ""
    if last:
        advice = (
            f"; epoch {start.epoch} trained at {last:g}: go on from there with: "
            f"{invocation.command(lr=last)}, or give a higher --lr"
        )
    return (
        f"{changed} changes the schedule after epoch {start.epoch}, where {needed.why}: "
        f"no rate to go on from; give the rate to continue with, --lr X{advice}"
    )


def _refuse_new_initial_rate(training, recorded, start: StartPoint, invocation) -> None:
    """Changing the starting rate of a run after an --lr change would change nothing
    (the change anchors the rate); say how to change it instead."""
    before = recorded.learning_rate
    changes = [change for change in rate_changes(training) if change.position <= start.position]
    if before == training.learning_rate or not changes:
        return
    kept = tuple(
        item for item in invocation.overrides
        if item.partition("=")[0].strip() != "training.learning_rate"
    )  # fmt: skip
    command = invocation.command(lr=training.learning_rate, overrides=kept)
    raise UserError(
        f"training.learning_rate is the rate this run started at ({before:g}); after its "
        f"--lr {changes[-1].rate:g} it no longer sets the rate: to train at "
        f"{training.learning_rate:g} from here: {command}"
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
    own = _inside(start.checkpoint, run_dir)
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


def _inside(path: Path, run_dir: Path) -> bool:
    return Path(path).resolve().parent == Path(run_dir).resolve()


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
