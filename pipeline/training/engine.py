"""The fit behind pipeline.training.start.train, once the start is decided.

Reads top to bottom: the machinery (distribution, precision, seed), data, the rate
of the start, the model; then the run directory is made to match the start and the
start is recorded (pipeline.training.start_log); then the fit, in two phases when
resuming mid-epoch: the rest of the interrupted epoch, then the remaining epochs.
"""

import dataclasses
import sys
from pathlib import Path

import keras

from pipeline.advice import Invocation
from pipeline.fine_tuning import initial_model, with_backbone_rate
from pipeline.models import check_model_matches_data, load_model, resolve_jit_compile
from pipeline.runs.run_reading import latest_checkpoint
from pipeline.runs.run_state import StartPoint, start_over_command
from pipeline.runs.start_config import (
    check_changes_inside_epochs,
    check_position_inside_epoch,
    check_workers_agree,
    config_with_rate,
)
from pipeline.training.callbacks import TrainingInterrupted
from pipeline.training.data import open_data
from pipeline.training.distribute import (
    precision_policy,
    seed_everything,
    setup_distribution,
)
from pipeline.training.fit_setup import FitSetup, build_callbacks
from pipeline.training.precision import check_same_precision, resolve_precision
from pipeline.training.start import PreparedStart, TrainingResult
from pipeline.training.start_log import log, record_start


def fit_prepared(prepared: PreparedStart, learning_rate, callbacks: tuple) -> TrainingResult:
    """Train from a start decided by pipeline.training.start (under the run's lock):
    distribution, precision and seed, the data, the rate of the start, the model; then
    the run directory is made to match the start and the fit runs."""
    config, run_dir, start = prepared.config, prepared.run_dir, prepared.start
    # First: a multi-worker JAX run must join its cluster before anything (the GPU query
    # of "auto" among them) starts JAX's backend.
    distribution = setup_distribution(config.training.distribute)
    check_workers_agree(start, distribution, config.training.batch_size, run_dir)
    precision, precision_why = resolve_precision(config.training.precision, config.model.network())
    check_same_precision(distribution, precision)
    config = dataclasses.replace(
        config, training=dataclasses.replace(config.training, precision=precision)
    )
    # Keras' dtype policy is process-wide: a caller's own is given back after the fit.
    with precision_policy(precision):
        return _fit_in_precision(
            prepared, config, distribution, learning_rate, callbacks, precision_why
        )


def _fit_in_precision(prepared, config, distribution, learning_rate, callbacks, precision_why):
    run_dir, start, invocation = prepared.run_dir, prepared.start, prepared.invocation
    seed_everything(config.training.seed, config.training.deterministic)
    train_data, val_data = open_data(config, distribution)
    batches = train_data.batches_per_epoch
    check_position_inside_epoch(start, batches)
    check_changes_inside_epochs(config.training, batches, prepared.config_source)
    config, change = config_with_rate(config, run_dir, start, learning_rate, batches, invocation)
    with distribution.scope:
        model, config, model_notes = _prepare_model(config, start, train_data)
    setup = FitSetup(
        model, config, run_dir, start, train_data, val_data, distribution, callbacks, invocation
    )
    notes = (*prepared.notes, *model_notes)
    record_start(setup, notes, change, learning_rate, precision_why)
    return dataclasses.replace(_fit(setup), config=config)


def build_optimizer(training, backbone_rate_scale: float = 1.0) -> keras.optimizers.Optimizer:
    """The config's optimizer; LearningRateControl sets its rate before each batch. With a
    `backbone_rate_scale` below 1 (fine-tuning), every layer but the classifier trains at
    that share of the rate."""
    rate = training.learning_rate
    if training.optimizer == "adam":
        kind, options = keras.optimizers.Adam, {}
    elif training.optimizer == "adamw":
        kind, options = keras.optimizers.AdamW, {"weight_decay": training.weight_decay}
    else:
        kind = keras.optimizers.SGD
        options = {"momentum": training.momentum, "nesterov": training.nesterov}
    if backbone_rate_scale != 1:
        kind, options = (
            with_backbone_rate(kind),
            {
                **options,
                "backbone_rate_scale": backbone_rate_scale,
            },
        )
    return kind(learning_rate=rate, **options)


def _prepare_model(config, start: StartPoint, train_data):
    """The model, the config as the run records it (a fine-tuned start records the
    fingerprint of its weights) and notes for train.log."""
    if start.checkpoint is None:
        initial = initial_model(config, train_data.info, train_data.image_shape)
        config = dataclasses.replace(config, fine_tune=initial.fine_tune)
        initial.model.compile(
            optimizer=build_optimizer(config.training, config.fine_tune.backbone_rate_scale),
            loss="sparse_categorical_crossentropy",
            metrics=_metrics(train_data.info.num_classes),
            jit_compile=resolve_jit_compile(config.training.jit_compile),
        )
        return initial.model, config, initial.notes
    model = load_model(start.checkpoint, config.training.jit_compile)
    check_model_matches_data(model, train_data.info, start.checkpoint, train_data.image_shape)
    return model, config, ()


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
        log(run_dir, str(stopped))
        log(run_dir, f"resume with: {resume_command(setup, stopped.checkpoint)}")
        return TrainingResult(run_dir, stopped.checkpoint, monitor.history, interrupted=stopped)
    except KeyboardInterrupt:
        # A second ctrl+c: Python's own KeyboardInterrupt, raised wherever training was.
        # The last complete checkpoint stays the latest (a save cut short left none).
        final = latest_checkpoint(run_dir)
        saved = f"the last saved state is {final}" if final else "nothing was saved yet"
        print(file=sys.stderr)
        log(run_dir, f"quit at once by a second ctrl+c (the current batch is lost); {saved}")
        log(run_dir, f"resume with: {resume_command(setup, final)}")
        stopped = QuitAtOnce(final)
        return TrainingResult(run_dir, final, monitor.history, interrupted=stopped)
    final = latest_checkpoint(run_dir)
    if checkpoint.diverged:
        reason = _divergence(setup, checkpoint.divergence, final)
        log(run_dir, reason, echo=False)  # the caller reports it (train.py: on stderr)
        return TrainingResult(run_dir, final, monitor.history, divergence=reason)
    log(run_dir, f"finished after epoch {monitor.history['epoch'][-1]}: {final}")
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
