"""The training engine behind train.py (constant learning rate, the ctrl+c way) and
train_decay.py (a fixed polynomial schedule).

Reads top to bottom: data, model (new or resumed), callbacks, fit.
"""

import dataclasses
import sys
from pathlib import Path

import keras

from pipeline.callbacks import (
    EpochCheckpoint,
    LoaderEpochSync,
    TrainingMonitor,
    checkpoint_path,
    list_checkpoints,
    polynomial_decay,
)
from pipeline.callbacks.epoch_checkpoint import CHECKPOINT_PATTERN
from pipeline.callbacks.training_monitor import HISTORY_FILE, PLOT_FILE
from pipeline.config import ExperimentConfig
from pipeline.datasets.hdf5_format import read_split_info, split_path
from pipeline.errors import UserError
from pipeline.io import HDF5DatasetGenerator
from pipeline.nn.model_io import build_model_for_data, check_model_matches_data, load_model

CONFIG_FILE = "config.json"
SCHEDULES = ("constant", "polynomial")


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    run_dir: Path
    final_checkpoint: Path
    history: dict


def train(
    config: ExperimentConfig,
    *,
    run_dir: str | Path | None = None,
    model_path: str | Path | None = None,
    start_epoch: int | None = None,
    learning_rate: float | None = None,
    schedule: str = "constant",
    overwrite: bool = False,
) -> TrainingResult:
    """Train (or resume) the config's model; checkpoints and history go to `run_dir`.

    `model_path` and/or `start_epoch` resume: with only `start_epoch`, the
    checkpoint of that epoch in `run_dir` is loaded. `learning_rate` replaces
    the optimiser's rate when resuming (and the config's when starting).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if learning_rate is not None and learning_rate <= 0:
        raise UserError(f"--lr must be > 0, got {learning_rate}")
    run_dir = Path(run_dir or config.checkpoints)
    training = config.training
    train_data, val_data = _open_data(config)

    model_path, start_epoch = _resolve_resume(run_dir, model_path, start_epoch, overwrite)
    if model_path is None:
        keras.utils.set_random_seed(training.seed)
        model = build_model_for_data(config.model, train_data.info, train_data.image_shape)
        model.compile(
            optimizer=build_optimizer(training, learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=_metrics(train_data.info.num_classes),
        )
    else:
        model = load_model(model_path)
        check_model_matches_data(model, train_data.info, model_path, train_data.image_shape)
        if learning_rate is not None:
            model.optimizer.learning_rate.assign(learning_rate)
    if start_epoch >= training.epochs:
        raise UserError(
            f"start epoch {start_epoch} is not before training.epochs={training.epochs}; "
            f"raise it with --epochs"
        )

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(config.to_json() + "\n")
    checkpoint = EpochCheckpoint(run_dir, training.checkpoint_every)
    monitor = TrainingMonitor(run_dir, start_epoch)
    callbacks = [LoaderEpochSync(train_data), checkpoint, monitor]
    if schedule == "polynomial":
        initial_rate = learning_rate or training.learning_rate
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch: polynomial_decay(
                    epoch,
                    initial_rate=initial_rate,
                    total_epochs=training.epochs,
                    power=training.decay_power,
                )
            )
        )
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=training.epochs,
        initial_epoch=start_epoch,
        callbacks=callbacks,
        # The one-line progress bar rewrites itself with \r, which fills log files.
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return TrainingResult(
        run_dir=run_dir,
        final_checkpoint=checkpoint_path(run_dir, checkpoint.last_saved_epoch),
        history=monitor.history,
    )


def build_optimizer(training, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
    rate = learning_rate or training.learning_rate
    if training.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate)
    return keras.optimizers.SGD(
        learning_rate=rate, momentum=training.momentum, nesterov=training.nesterov
    )


def _metrics(num_classes: int) -> list:
    metrics = ["accuracy"]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="rank5"))
    return metrics


def _open_data(config: ExperimentConfig):
    data = config.data
    loading = dict(
        image_size=data.image_size or None,
        storage=data.storage,
        shuffle_buffer=data.shuffle_buffer or None,
        workers=data.workers,
    )
    train_data = HDF5DatasetGenerator(
        split_path(data.dataset_dir, data.train_split),
        config.training.batch_size,
        shuffle=True,
        augment=data.augment,
        seed=config.training.seed,
        **loading,
    )
    val_path = split_path(data.dataset_dir, data.val_split)
    val_data = None
    if val_path.exists():
        val_batch = min(config.training.batch_size, read_split_info(val_path).num_samples)
        val_data = HDF5DatasetGenerator(val_path, val_batch, shuffle=False, **loading)
    return train_data, val_data


def _resolve_resume(run_dir: Path, model_path, start_epoch, overwrite: bool):
    """Decide what to start from: (checkpoint to load or None, first epoch to train)."""
    if model_path is not None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise UserError(f"--model {model_path} does not exist")
        if start_epoch is None:
            match = CHECKPOINT_PATTERN.match(model_path.name)
            start_epoch = int(match.group(1)) if match else 0
        return model_path, start_epoch
    existing = list_checkpoints(run_dir)
    if start_epoch:
        if start_epoch not in existing:
            available = ", ".join(str(epoch) for epoch in existing) or "none"
            raise UserError(
                f"no checkpoint for epoch {start_epoch} in {run_dir} "
                f"(epochs with checkpoints: {available})"
            )
        return existing[start_epoch], start_epoch
    if existing or (run_dir / HISTORY_FILE).exists():
        if not overwrite:
            last = max(existing) if existing else None
            resume = f"resume with --start_epoch {last}, " if last else ""
            raise UserError(
                f"{run_dir} already holds a run (checkpoints for epochs "
                f"{', '.join(map(str, existing)) or 'none'}); {resume}"
                f"pass --overwrite to start over, or choose another --checkpoints"
            )
        _clear_run(run_dir, existing.values())
    return None, 0


def _clear_run(run_dir: Path, checkpoints) -> None:
    for path in checkpoints:
        path.unlink()
    for name in (HISTORY_FILE, PLOT_FILE, CONFIG_FILE):
        (run_dir / name).unlink(missing_ok=True)
