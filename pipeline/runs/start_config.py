"""The config a start trains with, and the checks that a start fits it (no Keras here).

Resuming keeps the run's --lr changes up to the start point, and the rate at the
start is settled by one rule (pipeline/runs/learning_rate.py); a start must leave
epochs to train, name a batch inside its epoch, and agree across workers.
"""

import dataclasses
from pathlib import Path

from pipeline.advice import Invocation
from pipeline.config import PRECISIONS, FineTuneConfig
from pipeline.config.coercion import coerce
from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.json_files import read_json
from pipeline.runs.learning_rate import (
    RateNeeded,
    continue_rate,
    rate_at,
    rate_changes,
    with_changes_up_to,
)
from pipeline.runs.run_dir import CONFIG_FILE, inside_run_dir, list_checkpoints, state_path
from pipeline.runs.run_reading import latest_checkpoint
from pipeline.runs.run_state import StartPoint, as_training_config


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
    return recorded_section(run_dir, start, "training")


def recorded_section(run_dir: Path, start: StartPoint, name: str) -> dict | None:
    """Section `name` of the config the run was trained with up to the start point (see
    recorded_training); None where there is none."""
    own = start.checkpoint is not None and inside_run_dir(start.checkpoint, run_dir)
    config_file = Path(run_dir) / CONFIG_FILE
    values = read_json(config_file) if own and config_file.is_file() else start.state
    if own and config_file.is_file():
        section = values.get(name) if isinstance(values, dict) else None
    else:
        config = values.get("config") if isinstance(values, dict) else None
        section = config.get(name) if isinstance(config, dict) else None
    return section if isinstance(section, dict) else None


def _recorded_config(run_dir: Path, start: StartPoint):
    """The recorded training section as a config (None: none, or one that no longer
    reads; the rate rule then has nothing to continue from)."""
    recorded = recorded_training(run_dir, start)
    return None if recorded is None else as_training_config(recorded, run_dir / CONFIG_FILE)


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
        training = _with_recorded_precision(training, recorded, notes)
    training = with_changes_up_to(training, start.position)
    epoch_in_name = read_state(start.checkpoint).get("epoch")
    if start.rewind and epoch_in_name not in (None, start.epoch):
        notes.append(
            f"{start.checkpoint} was saved after epoch {epoch_in_name}; --start_epoch counts it "
            f"as after epoch {start.epoch}"
        )
    config = dataclasses.replace(config, training=training)
    recorded_fine_tune = recorded_section(run_dir, start, "fine_tune")
    return _with_recorded_fine_tune(config, recorded_fine_tune, run_dir, notes), notes


def _with_recorded_fine_tune(config, recorded: dict | None, run_dir: Path, notes: list):
    """The fine_tune section applies when a run starts; a resume keeps the run's record of
    where its weights came from. Another fine_tune.init is refused: the weights resumed
    are the run's own, and its record would name a file they never came from."""
    own = coerce(FineTuneConfig, recorded or {}, "fine_tune", str(run_dir / CONFIG_FILE))
    given = config.fine_tune
    if given.init and given.init != own.init:
        started = f"from {own.init}" if own.init else "from random weights"
        raise UserError(
            f"fine_tune.init {given.init} applies when a run starts, and this run started "
            f"{started}: resume without it, or fine-tune in a new run directory"
        )
    if dataclasses.replace(given, init=own.init, init_sha256=own.init_sha256) != own:
        notes.append("fine_tune settings apply when a run starts: the run's own are kept")
    return dataclasses.replace(config, fine_tune=own)


def _with_recorded_precision(training, recorded: dict, notes: list):
    """A run resumes in the precision it trained in: "auto" (a preset given again) keeps
    the recorded one, which another machine might not choose."""
    own = recorded.get("precision")
    if training.precision != "auto" or own not in PRECISIONS or own == "auto":
        return training
    notes.append(f"training.precision 'auto' keeps the run's own, {own}")
    return dataclasses.replace(training, precision=own)


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
