"""What train.log says when a run starts: where from, at which rate, what changed.

`record_start` also makes the run directory match the start (a rewind sets the later
epochs aside) and rewrites config.json and run_info.json: the run's files describe
the run as it goes on from here.
"""

import dataclasses
from pathlib import Path

import keras

from pipeline.config import config_from_values
from pipeline.datasets.hdf5_format import split_path
from pipeline.errors import UserError
from pipeline.runs.json_files import read_json
from pipeline.runs.learning_rate import describe_position, describe_rule, rate_at
from pipeline.runs.rewind import apply_start
from pipeline.runs.run_dir import CONFIG_FILE, append_log
from pipeline.runs.run_info import write_run_info
from pipeline.runs.run_state import describe_start
from pipeline.runs.start_config import config_differences
from pipeline.training.fit_setup import FitSetup


def record_start(setup: FitSetup, notes, change, learning_rate, precision_why: str) -> None:
    """Make the run directory match the start, rewrite config.json (what the run does
    now) and say in train.log what changed: `change` is the rate change made at the
    start (by --lr when `learning_rate` is given, else to keep the run's rate);
    `precision_why` says why the run trains in its precision."""
    run_dir, start, config = setup.run_dir, setup.start, setup.config
    previous = _previous_config(run_dir / CONFIG_FILE) if not start.clear else None
    abandoned = apply_start(run_dir, start)
    data_files = [setup.train_data.db_path] + ([setup.val_data.db_path] if setup.val_data else [])
    write_run_info(run_dir, config.to_dict(), data_files, precision_why)
    verb = "going back to" if start.rewind else "resuming from"
    if start.checkpoint:
        where = f"{verb} {describe_start(start)}"
    elif config.fine_tune.init:
        where = f"starting from the weights of {config.fine_tune.init} (fine-tuning)"
    else:
        where = "starting from fresh weights"
    training = config.training
    log(
        run_dir,
        f"{where}; training {setup.model.name} to epoch {training.epochs}, learning rate "
        f"{_first_rate(setup, training):g} for the next batch, {_last_epoch_rate(setup)} "
        f"({describe_rule(training)})",
    )
    log(run_dir, f"precision: {training.precision} ({precision_why})")
    if setup.val_data is None:
        val_path = split_path(config.data.dataset_dir, config.data.val_split)
        log(run_dir, f"no validation split ({val_path} does not exist): training without one")
    if abandoned:
        log(run_dir, _describe_set_aside(run_dir, start, abandoned))
    if previous and start.checkpoint:
        for line in config_differences(_without_changes(previous), _without_changes(config)):
            log(run_dir, f"config changed: {line}")
    if start.checkpoint and change is not None:
        log(run_dir, _describe_change(setup, change, learning_rate))
    for note in notes:
        log(run_dir, f"note: {note}")


def _describe_set_aside(run_dir: Path, start, abandoned: Path) -> str:
    """What a rewind moved, in words: the epochs after the checkpoint, or (going on from a
    checkpoint outside the run directory) the whole branch that was there."""
    if start.checkpoint.resolve().parent == run_dir.resolve():
        return (
            f"what came after epoch {start.epoch} ({start.checkpoint.name}) was moved to "
            f"{abandoned}"
        )
    return (
        f"the branch that was in {run_dir} was moved to {abandoned}: training goes on from "
        f"{start.checkpoint}, outside it"
    )


def _describe_change(setup: FitSetup, change, learning_rate) -> str:
    """The rate change made at the start, in words: --lr, or the run's rate kept."""
    training = setup.config.training
    where = describe_position(change.position)
    if learning_rate is not None:
        before = dataclasses.replace(training, rate_changes=training.rate_changes[:-1])
        return (
            f"learning rate changed: --lr {change.rate:g} from {where} (it would have been "
            f"{_first_rate(setup, before):g})"
        )
    settings = ", ".join(
        f"{key} {old!r} -> {getattr(training, key)!r}" for key, old in change.before.items()
    )
    return (
        f"schedule changed ({settings}): the rate goes on at {change.rate:g} from {where}, "
        f"the rest of the {training.schedule} curve rescaled to it (--lr sets another)"
    )


def _last_epoch_rate(setup: FitSetup) -> str:
    """The rate the last epoch starts at, in words (the optimizer's own under plateau)."""
    training = setup.config.training
    batches = setup.train_data.batches_per_epoch
    rate = rate_at(training, training.epochs - 1, 0, batches)
    if rate is None:
        return "then lowered when the monitored value stalls"
    return f"{rate:g} at the start of epoch {training.epochs} (the last)"


def _previous_config(config_file: Path) -> dict | None:
    """The config.json this start replaces (None: none, or a damaged one, rewritten now),
    with the defaults of keys added since it was written (an older run's file has no
    [expected] section: not a change to log)."""
    try:
        values = read_json(config_file) if config_file.is_file() else None
    except UserError:
        return None
    if values is None:
        return None
    try:
        return config_from_values(values, source=str(config_file)).to_dict()
    except UserError:  # written under other rules: compared as it is
        return values


def _without_changes(config) -> dict:
    """A saved config without its --lr changes, which are logged on their own."""
    values = config if isinstance(config, dict) else config.to_dict()
    training = values.get("training")
    training = training if isinstance(training, dict) else {}
    return {**values, "training": {**training, "rate_changes": None}}


def _first_rate(setup: FitSetup, training) -> float:
    """The rate of the first batch this start trains under `training`."""
    start = setup.start
    rate = rate_at(training, start.epoch, start.batch, setup.train_data.batches_per_epoch)
    if rate is None:  # plateau: the optimizer's own rate
        rate = float(keras.ops.convert_to_numpy(setup.model.optimizer.learning_rate))
    return rate


def log(run_dir: Path, message: str, echo: bool = True) -> None:
    """Print a line and append it, with the time, to train.log."""
    if echo:
        print(message, flush=True)
    append_log(run_dir, message)
