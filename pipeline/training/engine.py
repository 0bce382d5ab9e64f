"""The training engine behind train.py and train_decay.py.

Reads top to bottom: where to start and with which config (decided by
pipeline.runs.run_state, which writes nothing), the machinery (distribution,
precision, seed), data, model; then the run directory is made to match the
start and the start is recorded; then the fit, in two phases when resuming
mid-epoch: the rest of the interrupted epoch, then the remaining epochs.
"""

import dataclasses
import math
import sys
from pathlib import Path

import keras

from pipeline.advice import Invocation
from pipeline.config import ExperimentConfig, config_from_values
from pipeline.datasets.hdf5_format import split_path
from pipeline.errors import UserError
from pipeline.models import (
    build_model_for_data,
    check_model_matches_data,
    load_model,
    resolve_jit_compile,
)
from pipeline.runs.history import load_history
from pipeline.runs.learning_rate import describe_position, describe_rule, rate_at
from pipeline.runs.run_dir import (
    CONFIG_FILE,
    append_log,
    latest_checkpoint,
    read_json,
    run_lock,
    write_run_info,
)
from pipeline.runs.run_state import (
    StartPoint,
    StartRequest,
    apply_start,
    check_changes_inside_epochs,
    check_epochs,
    check_position_inside_epoch,
    check_workers_agree,
    config_differences,
    config_for_start,
    config_with_rate,
    describe_start,
    resolve_start,
    start_over_command,
)
from pipeline.training.callbacks import TrainingInterrupted
from pipeline.training.data import open_data
from pipeline.training.distribute import (
    seed_everything,
    set_precision,
    setup_distribution,
    worker_run_dir,
)
from pipeline.training.fit_setup import FitSetup, build_callbacks

__all__ = ["StartPoint", "TrainingResult", "build_optimizer", "open_data", "train"]


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    run_dir: Path
    final_checkpoint: Path | None
    history: dict
    interrupted: TrainingInterrupted | None = None
    # Why the run stopped with a loss that is not finite (None: it did not).
    divergence: str | None = None


def train(
    config: ExperimentConfig,
    *,
    run_dir=None,
    model_path=None,
    start_epoch: int | None = None,
    resume: bool = False,
    learning_rate: float | None = None,
    overwrite: bool = False,
    callbacks=(),
    invocation: Invocation | None = None,
    config_source: str = "the config",
) -> TrainingResult:
    """Train, or resume, the config's model; everything it writes goes to `run_dir`.

    Resuming: `resume` takes the checkpoint latest.json names (an epoch or an
    interrupt); `start_epoch` alone takes epoch_N of the run directory;
    `model_path` takes that file. `learning_rate` (--lr) is the rate of the very
    next batch, the rest of the schedule rescaled to it (pipeline.runs.learning_rate);
    on a fresh start it is the starting rate. `callbacks` are added to the fit's;
    `invocation` is the command as given, which refusals advise with what must change;
    `config_source` names the file the config came from in errors.
    """
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise UserError(f"--lr must be a finite number > 0, got {learning_rate}")
    given_dir = Path(run_dir or config.checkpoints)
    # Advice names the run directory given (a worker finds its own copy from it).
    invocation = invocation or Invocation(checkpoints=str(given_dir))
    run_dir = worker_run_dir(given_dir, config.training.distribute)
    request = StartRequest(resume, start_epoch, model_path, overwrite, invocation)
    with run_lock(run_dir):
        start = resolve_start(run_dir, request)
        if start.checkpoint is not None:
            # The history this start continues is read back now: a damaged one is
            # refused before anything is written.
            load_history(run_dir, 10**9)
        config, notes = config_for_start(config, run_dir, start, _config_given(invocation))
        check_epochs(start, config.training, run_dir, invocation)
        distribution = setup_distribution(config.training.distribute)
        check_workers_agree(start, distribution, config.training.batch_size, run_dir)
        set_precision(config.training.precision)
        seed_everything(config.training.seed, config.training.deterministic)
        train_data, val_data = open_data(config, distribution)
        batches = train_data.batches_per_epoch
        check_position_inside_epoch(start, batches)
        check_changes_inside_epochs(config.training, batches, config_source)
        config, change = config_with_rate(
            config, run_dir, start, learning_rate, batches, invocation
        )
        with distribution.scope:
            model = _prepare_model(config, start, train_data)
        setup = FitSetup(
            model, config, run_dir, start, train_data, val_data, distribution,
            tuple(callbacks), invocation,
        )  # fmt: skip
        _record_start(setup, notes, change, learning_rate)
        return _fit(setup)


def build_optimizer(training) -> keras.optimizers.Optimizer:
    """The config's optimizer; LearningRateControl sets its rate before each batch."""
    rate = training.learning_rate
    if training.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=training.weight_decay)
    return keras.optimizers.SGD(
        learning_rate=rate, momentum=training.momentum, nesterov=training.nesterov
    )


def _prepare_model(config, start: StartPoint, train_data):
    if start.checkpoint is None:
        model = build_model_for_data(config.model, train_data.info, train_data.image_shape)
        model.compile(
            optimizer=build_optimizer(config.training),
            loss="sparse_categorical_crossentropy",
            metrics=_metrics(train_data.info.num_classes),
            jit_compile=resolve_jit_compile(config.training.jit_compile),
        )
        return model
    model = load_model(start.checkpoint, config.training.jit_compile)
    check_model_matches_data(model, train_data.info, start.checkpoint, train_data.image_shape)
    return model


def _record_start(setup: FitSetup, notes, change, learning_rate) -> None:
    """Make the run directory match the start, rewrite config.json (what the run does
    now) and say in train.log what changed: `change` is the rate change made at the
    start (by --lr when `learning_rate` is given, else to keep the run's rate)."""
    run_dir, start, config = setup.run_dir, setup.start, setup.config
    previous = _previous_config(run_dir / CONFIG_FILE) if not start.clear else None
    abandoned = apply_start(run_dir, start)
    data_files = [setup.train_data.db_path] + ([setup.val_data.db_path] if setup.val_data else [])
    write_run_info(run_dir, config.to_dict(), data_files)
    verb = "going back to" if start.rewind else "resuming from"
    where = f"{verb} {describe_start(start)}" if start.checkpoint else "starting from fresh weights"
    training = config.training
    _log(
        run_dir,
        f"{where}; training {setup.model.name} to epoch {training.epochs}, learning rate "
        f"{_first_rate(setup, training):g} for the next batch, {_last_epoch_rate(setup)} "
        f"({describe_rule(training)})",
    )
    if setup.val_data is None:
        val_path = split_path(config.data.dataset_dir, config.data.val_split)
        _log(run_dir, f"no validation split ({val_path} does not exist): training without one")
    if abandoned:
        _log(run_dir, _describe_set_aside(run_dir, start, abandoned))
    if previous and start.checkpoint:
        for line in config_differences(_without_changes(previous), _without_changes(config)):
            _log(run_dir, f"config changed: {line}")
    if start.checkpoint and change is not None:
        _log(run_dir, _describe_change(setup, change, learning_rate))
    for note in notes:
        _log(run_dir, f"note: {note}")


def _config_given(invocation: Invocation) -> bool:
    """Whether the user gave rate changes of their own: a --config, or a --set of them."""
    keys = {item.partition("=")[0].strip() for item in invocation.overrides}
    return invocation.config is not None or "training.rate_changes" in keys


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


def _metrics(num_classes: int) -> list:
    metrics = ["accuracy"]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="rank5"))
    return metrics


def _fit(setup: FitSetup) -> TrainingResult:
    training, start, run_dir = setup.config.training, setup.start, setup.run_dir
    run_callbacks = build_callbacks(setup)
    checkpoint, monitor, interrupt = (
        run_callbacks.checkpoint,
        run_callbacks.monitor,
        run_callbacks.interrupt,
    )
    # A mid-epoch resume trains the rest of that epoch first, in a fit of its own, since
    # Keras fixes the number of batches per epoch when a fit starts.
    phases = []
    if start.batch:
        phases.append((start.epoch, start.batch, start.epoch + 1))
    first_full_epoch = start.epoch + (1 if start.batch else 0)
    if first_full_epoch < training.epochs:
        phases.append((first_full_epoch, 0, training.epochs))
    try:
        with interrupt.listening():
            for first_epoch, first_batch, end_epoch in phases:
                run_callbacks.loader_sync.start_at(first_epoch, first_batch)
                # The second phase continues the history the first one wrote.
                monitor.start_epoch = first_epoch
                setup.model.fit(
                    setup.train_data,
                    validation_data=setup.val_data,
                    epochs=end_epoch,
                    initial_epoch=first_epoch,
                    callbacks=run_callbacks.all,
                    # The generator shuffles, by (seed, epoch); Keras' own shuffle would
                    # reorder its batches with Python's global RNG, unrepeatably.
                    shuffle=False,
                    # The one-line progress bar rewrites itself with \\r, which fills log files.
                    verbose=1 if sys.stdout.isatty() else 2,
                )
                # Early stopping or a diverged loss ends the run, not just the phase.
                if setup.model.stop_training or checkpoint.diverged:
                    break
    except TrainingInterrupted as stopped:
        _log(run_dir, str(stopped))
        _log(run_dir, f"resume with: {resume_command(setup, stopped.checkpoint)}")
        return TrainingResult(run_dir, stopped.checkpoint, monitor.history, interrupted=stopped)
    except KeyboardInterrupt:
        # A second ctrl+c: Python's own KeyboardInterrupt, raised wherever training was.
        # The last complete checkpoint stays the latest (a save cut short left none).
        final = latest_checkpoint(run_dir)
        saved = f"the last saved state is {final}" if final else "nothing was saved yet"
        print(file=sys.stderr)
        _log(run_dir, f"quit at once by a second ctrl+c (the current batch is lost); {saved}")
        _log(run_dir, f"resume with: {resume_command(setup, final)}")
        stopped = QuitAtOnce(final)
        return TrainingResult(run_dir, final, monitor.history, interrupted=stopped)
    final = latest_checkpoint(run_dir)
    if checkpoint.diverged:
        reason = _divergence(setup, checkpoint.divergence, final)
        _log(run_dir, reason, echo=False)  # the caller reports it (train.py: on stderr)
        return TrainingResult(run_dir, final, monitor.history, divergence=reason)
    _log(run_dir, f"finished after epoch {monitor.history['epoch'][-1]}: {final}")
    return TrainingResult(run_dir, final, monitor.history)


@dataclasses.dataclass(frozen=True)
class QuitAtOnce:
    """A second ctrl+c: training quit without saving; `checkpoint` is the last saved."""

    checkpoint: Path | None
    by: str = "ctrl+c"


def resume_command(setup: FitSetup, checkpoint, lr: float | None = None) -> str:
    """The command that goes on from `checkpoint`: the run's config.json holds its
    settings, so only --resume (on the run directory given: a worker finds its own
    copy from it), with `lr` if a new rate is advised. A run that saved nothing yet
    begins again: from the checkpoint it was started from (the same command), else
    over, as it was given."""
    invocation = setup.invocation
    if lr is not None:
        invocation = dataclasses.replace(invocation, lr=lr)
    if checkpoint is None:
        if setup.start.checkpoint is not None:
            return invocation.command()
        return start_over_command(setup.run_dir, invocation)
    base = invocation.checkpoints or str(setup.run_dir)
    return Invocation(invocation.script, base).command(resume=True, lr=lr)


def _divergence(setup: FitSetup, divergence, final: Path | None) -> str:
    """One line: where the loss stopped being finite and the command that goes on."""
    epoch, logs = divergence
    rate = float(keras.ops.convert_to_numpy(setup.model.optimizer.learning_rate))
    lower = float(f"{rate / 10:.3g}")
    what = f"training diverged in epoch {epoch} (loss {logs.get('loss')})"
    if final is None:
        return (
            f"{what} before any checkpoint was saved; begin again at a lower rate with: "
            f"{resume_command(setup, None, lower)}"
        )
    return (
        f"{what}; the latest checkpoint stays {final}; resume from it at a lower rate with: "
        f"{resume_command(setup, final, lower)}"
    )


def _log(run_dir: Path, message: str, echo: bool = True) -> None:
    """Print a line and append it, with the time, to train.log."""
    if echo:
        print(message, flush=True)
    append_log(run_dir, message)
