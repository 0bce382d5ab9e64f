"""What one training fit is given: its setup, and its callbacks in the order they run."""

import dataclasses
from pathlib import Path

import keras

from pipeline.advice import Invocation
from pipeline.config import ExperimentConfig
from pipeline.runs.learning_rate import rate_at, rate_changes
from pipeline.runs.run_dir import TENSORBOARD_DIR
from pipeline.runs.run_state import StartPoint
from pipeline.training.callbacks import (
    EpochCheckpoint,
    InterruptCheckpoint,
    LearningRateControl,
    LoaderEpochSync,
    MetricStateRestore,
    ResumablePlateau,
    TrainingMonitor,
)
from pipeline.training.callbacks.progress import RunProgress


@dataclasses.dataclass(frozen=True)
class FitSetup:
    """Everything a fit needs, decided before it starts."""

    model: keras.Model
    config: ExperimentConfig
    run_dir: Path
    start: StartPoint
    train_data: object
    val_data: object
    distribution: object
    extra_callbacks: tuple = ()
    # The command as given: advice after training (divergence) builds on it.
    invocation: Invocation = Invocation()


@dataclasses.dataclass(frozen=True)
class RunCallbacks:
    """The callback list, and the callbacks the training loop drives or reads."""

    all: list
    loader_sync: LoaderEpochSync
    checkpoint: EpochCheckpoint
    monitor: TrainingMonitor
    interrupt: InterruptCheckpoint


def build_callbacks(setup: FitSetup) -> RunCallbacks:
    """The fit's callbacks, in the order they must run."""
    training, start, data = setup.config.training, setup.start, setup.train_data
    plateau = None
    if training.schedule == "plateau":
        plateau = ResumablePlateau(
            monitor=training.plateau_monitor,
            factor=training.decay_factor,
            patience=training.plateau_patience,
            saved=start.state.get("plateau"),
        )
    saved = {
        "config": setup.config.to_dict(),
        "class_names": list(data.info.class_names),
        # The build trained on: a report later compares only data of the same build.
        "data_build_id": data.info.build_id,
        "workers": setup.distribution.process_count,
    }

    batches = data.batches_per_epoch
    monitor = TrainingMonitor(
        setup.run_dir,
        start.epoch,
        resumed_epoch_rate=start.state.get("epoch_rate") if start.batch else None,
        resumed_epoch_seconds=float(start.state.get("epoch_seconds", 0.0)) if start.batch else 0.0,
        rate_changes=[(c.epoch + c.batch / batches, c.rate) for c in rate_changes(training)],
    )

    def state() -> dict:
        # The current epoch's first rate: the history row of an epoch resumed mid-way.
        dynamic = {"epoch_rate": monitor.epoch_rate, "epoch_seconds": monitor.epoch_seconds()}
        if plateau:
            dynamic["plateau"] = plateau.counters()
        return {**saved, **dynamic}

    checkpoint = EpochCheckpoint(
        setup.run_dir,
        training.checkpoint_every,
        state=state,
        keep_last=training.keep_last,
        best_metric=training.best_metric,
    )
    interrupt = InterruptCheckpoint(
        setup.run_dir, data, state=state, agree=setup.distribution.any_process
    )
    loader_sync = LoaderEpochSync(data)
    callbacks = [
        loader_sync,  # first: the others read the generator's position
        RunProgress(training.epochs, data),
        LearningRateControl(lambda epoch, batch: rate_at(training, epoch, batch, batches), data),
    ]
    callbacks += [plateau] if plateau else []
    if start.metric_states:
        callbacks.append(MetricStateRestore(list(start.metric_states)))
    callbacks += [keras.callbacks.TerminateOnNaN(), checkpoint, monitor]
    callbacks += [*_optional_callbacks(training, setup.run_dir), *setup.extra_callbacks]
    callbacks.append(interrupt)  # last: on an epoch boundary the others record the epoch first
    return RunCallbacks(callbacks, loader_sync, checkpoint, monitor, interrupt)


def _optional_callbacks(training, run_dir) -> list:
    callbacks = []
    if training.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=training.early_stopping_monitor, patience=training.early_stopping_patience
            )
        )
    if training.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR)))
    return callbacks
