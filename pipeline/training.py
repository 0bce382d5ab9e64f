"""The training engine behind train.py and train_decay.py.

Reads top to bottom: where to start (fresh, an epoch checkpoint, an
interrupt), the machinery (distribution, precision, seed), data, model,
callbacks, then the fit, in two phases when resuming mid-epoch: the rest of
the interrupted epoch, then the remaining epochs.
"""

import dataclasses
import datetime
import sys
from pathlib import Path

import keras

from pipeline.callbacks import (
    EpochCheckpoint,
    InterruptCheckpoint,
    LearningRateControl,
    LoaderEpochSync,
    MetricStateRestore,
    TrainingInterrupted,
    TrainingMonitor,
    make_schedule,
)
from pipeline.callbacks.training_monitor import CSV_FILE, HISTORY_FILE, PLOT_FILE
from pipeline.config import ExperimentConfig
from pipeline.datasets.hdf5_format import read_split_info, split_path
from pipeline.distribute import (
    resolve_jit_compile,
    seed_everything,
    set_precision,
    setup_distribution,
    worker_run_dir,
)
from pipeline.errors import UserError
from pipeline.io import HDF5DatasetGenerator
from pipeline.io.hdf5_generator import STORAGE_MODES, fits_in_memory
from pipeline.nn.model_io import build_model_for_data, check_model_matches_data, load_model
from pipeline.run_dir import (
    BEST,
    CONFIG_FILE,
    INTERRUPT,
    LATEST,
    RUN_INFO_FILE,
    latest_checkpoint,
    list_checkpoints,
    point_latest,
    read_state,
    run_lock,
    state_path,
    write_run_info,
)

LOG_FILE = "train.log"


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


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    run_dir: Path
    final_checkpoint: Path | None
    history: dict
    interrupted: TrainingInterrupted | None = None


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
) -> TrainingResult:
    """Train, or resume, the config's model; everything it writes goes to `run_dir`.

    Resuming: `resume` takes the checkpoint latest.json names (an epoch or an
    interrupt); `start_epoch` alone takes epoch_N of the run directory;
    `model_path` takes that file. `learning_rate` replaces the optimizer's
    rate (with a schedule: its base rate). `callbacks` are added to the fit's.
    """
    if learning_rate is not None and learning_rate <= 0:
        raise UserError(f"--lr must be > 0, got {learning_rate}")
    training = config.training
    run_dir = worker_run_dir(Path(run_dir or config.checkpoints), training.distribute)
    with run_lock(run_dir):
        start = resolve_start(run_dir, model_path, start_epoch, resume, overwrite)
        if start.epoch >= training.epochs:
            raise UserError(
                f"{start.checkpoint} is at epoch {start.epoch}, not before training.epochs="
                f"{training.epochs}; raise it with --epochs"
            )
        distribution = setup_distribution(training.distribute)
        _check_workers_agree(start, distribution, training.batch_size)
        set_precision(training.precision)
        seed_everything(training.seed, training.deterministic)
        train_data, val_data = open_data(config, distribution)
        with distribution.scope:
            model = _prepare_model(config, start, train_data, learning_rate)
        write_run_info(
            run_dir,
            config.to_dict(),
            [train_data.db_path] + ([val_data.db_path] if val_data else []),
        )
        _log(run_dir, _describe_start(start, model))
        return _fit(
            model, config, run_dir, start, (train_data, val_data), distribution, learning_rate,
            callbacks,
        )  # fmt: skip


def _check_workers_agree(start: StartPoint, distribution, batch_size: int) -> None:
    """Workers resume on their own copies of the run: all must start from one position,
    and a mid-epoch position needs the worker count and batch size that split that
    epoch. The collective comparison comes first, so that all workers raise together."""
    position = (start.epoch, start.batch, start.workers, start.batch_size or batch_size)
    if not distribution.same_on_every_process(position):
        raise UserError(
            f"the workers start from different points (this one: epoch {start.epoch}, "
            f"batch {start.batch}, from {start.checkpoint}); resume every worker alike"
        )
    if start.batch and start.workers != distribution.process_count:
        raise UserError(
            f"{start.checkpoint} stopped mid-epoch with {start.workers} worker(s), this run "
            f"has {distribution.process_count}: resume with as many, or from an epoch "
            f"checkpoint (--start_epoch)"
        )
    if start.batch and start.batch_size != batch_size:
        raise UserError(
            f"{start.checkpoint} stopped after batch {start.batch} of batch size "
            f"{start.batch_size}, not {batch_size}: resume mid-epoch with the same "
            f"batch size, or from an epoch checkpoint (--start_epoch)"
        )


def resolve_start(
    run_dir: Path, model_path, start_epoch, resume: bool, overwrite: bool
) -> StartPoint:
    """Decide what to start from; a fresh start in a used run directory needs `overwrite`."""
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise UserError(f"nothing to resume in {run_dir}: it holds no checkpoint")
        return _start_from(checkpoint, read_state(checkpoint))
    if model_path is not None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise UserError(f"--model {model_path} does not exist")
        state = read_state(model_path)
        if start_epoch is not None:
            state = {**state, "epoch": start_epoch, "batch": 0}
        return _rewind(run_dir, _start_from(model_path, state))
    existing = list_checkpoints(run_dir)
    if start_epoch:
        if start_epoch not in existing:
            available = ", ".join(str(epoch) for epoch in existing) or "none"
            raise UserError(
                f"no checkpoint for epoch {start_epoch} in {run_dir} "
                f"(epochs with checkpoints: {available})"
            )
        return _rewind(run_dir, StartPoint(existing[start_epoch], start_epoch, 0))
    leftovers = [run_dir / name for name in (HISTORY_FILE, INTERRUPT)]
    if existing or any(path.exists() for path in leftovers):
        if not overwrite:
            last = max(existing) if existing else None
            hint = (
                f"resume with --resume or --start_epoch {last}, "
                if last
                else "resume with --resume, "
            )
            raise UserError(
                f"{run_dir} already holds a run (checkpoints for epochs "
                f"{', '.join(map(str, existing)) or 'none'}); {hint}"
                f"pass --overwrite to start over, or choose another --checkpoints"
            )
        clear_run(run_dir)
    return StartPoint(None, 0, 0)


def _start_from(checkpoint: Path, state: dict) -> StartPoint:
    batch_size = state.get("config", {}).get("training", {}).get("batch_size")
    metric_states = tuple(state.get("metric_states", ())) if state["batch"] else ()
    workers = int(state.get("workers", 1))
    return StartPoint(
        checkpoint, state["epoch"], state["batch"], batch_size, metric_states, workers
    )


def _rewind(run_dir: Path, start: StartPoint) -> StartPoint:
    """Going back to an earlier checkpoint abandons what came after it: latest.json
    names the checkpoint resumed from, so a crash before the next save cannot send a
    later --resume (or rank_accuracy.py) to the abandoned branch."""
    if start.checkpoint.resolve().parent == run_dir.resolve():
        point_latest(run_dir, start.checkpoint)
    else:
        (run_dir / LATEST).unlink(missing_ok=True)
    return start


def clear_run(run_dir: Path) -> None:
    """Delete a run's checkpoints, their states and its records (for --overwrite)."""
    checkpoints = [*list_checkpoints(run_dir).values(), run_dir / INTERRUPT, run_dir / BEST]
    for path in checkpoints:
        path.unlink(missing_ok=True)
        state_path(path).unlink(missing_ok=True)
    records = (LATEST, HISTORY_FILE, CSV_FILE, PLOT_FILE, CONFIG_FILE, RUN_INFO_FILE, LOG_FILE)
    for name in records:
        (run_dir / name).unlink(missing_ok=True)


def open_data(config: ExperimentConfig, distribution):
    """The train and validation generators of this process.

    Keras splits each batch between the replicas. With several workers, each feeds
    its part of every global batch from its own shard of the training split; each
    feeds the whole validation split, so that every validation sample counts the same
    number of times and the validation metrics stay exact (JAX's data-parallel last
    batch still drops fewer samples than a worker has devices, as on one machine).
    """
    data, training = config.data, config.training
    workers = distribution.process_count
    if training.batch_size % workers:
        raise UserError(
            f"training.batch_size {training.batch_size} must be a multiple of the {workers} workers"
        )
    batch_size = training.batch_size // workers
    loading = dict(
        image_size=data.image_size or None,
        storage=data.storage,
        shuffle_buffer=data.shuffle_buffer or None,
        workers=data.workers,
    )
    # JAX splits each batch evenly over its devices; TensorFlow's strategies need not.
    loading["batch_multiple"] = (
        distribution.local_replicas if distribution.name in ("data_parallel", "multiworker") else 1
    )
    train_path = split_path(data.dataset_dir, data.train_split)
    train_storage = data.storage
    if workers > 1:
        train_storage = _agreed_storage(data.storage, train_path, distribution)
    train_data = HDF5DatasetGenerator(
        train_path,
        batch_size,
        shuffle=True,
        augment=data.augment,
        seed=training.seed,
        shard_index=distribution.process_index,
        num_shards=workers,
        # Workers step together: every one must have the same number of batches.
        equal_shards=True,
        **{**loading, "storage": train_storage},
    )
    val_path = split_path(data.dataset_dir, data.val_split)
    val_data = None
    if val_path.exists():
        val_batch = min(batch_size, read_split_info(val_path).num_samples)
        val_batch -= val_batch % loading["batch_multiple"]
        val_data = HDF5DatasetGenerator(val_path, val_batch, shuffle=False, **loading)
    return train_data, val_data


def _agreed_storage(storage: str, train_path: Path, distribution) -> str:
    """The storage mode every worker uses for the training split. The epoch order depends
    on it and the workers must split one order: out of core on all of them unless the
    split fits in memory on all. Every worker makes both collective calls, whatever
    its own settings."""
    try:
        fits = fits_in_memory(train_path)
    except UserError:
        fits = False  # the loader reports the file's problem itself, on this worker
    too_large = distribution.any_process(not fits)
    if not distribution.same_on_every_process((STORAGE_MODES.index(storage),)):
        raise UserError(
            f"data.storage differs between the workers (this one: {storage!r}); "
            f"give every worker the same"
        )
    if storage != "auto":
        return storage
    return "disk" if too_large else "memory"


def build_optimizer(training, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
    rate = learning_rate or training.learning_rate
    if training.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=training.weight_decay)
    return keras.optimizers.SGD(
        learning_rate=rate, momentum=training.momentum, nesterov=training.nesterov
    )


def _prepare_model(config, start: StartPoint, train_data, learning_rate):
    if start.checkpoint is None:
        model = build_model_for_data(config.model, train_data.info, train_data.image_shape)
        model.compile(
            optimizer=build_optimizer(config.training, learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=_metrics(train_data.info.num_classes),
            jit_compile=resolve_jit_compile(config.training.jit_compile),
        )
        return model
    model = load_model(start.checkpoint, config.training.jit_compile)
    check_model_matches_data(model, train_data.info, start.checkpoint, train_data.image_shape)
    if learning_rate is not None:
        model.optimizer.learning_rate.assign(learning_rate)
    return model


def _metrics(num_classes: int) -> list:
    metrics = ["accuracy"]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="rank5"))
    return metrics


def _fit(model, config, run_dir, start, data, distribution, learning_rate, extra_callbacks):
    training = config.training
    train_data, val_data = data
    config_dict = config.to_dict()
    loader_sync = LoaderEpochSync(train_data)
    state = {
        "config": config_dict,
        "class_names": list(train_data.info.class_names),
        "workers": distribution.process_count,
    }
    checkpoint = EpochCheckpoint(
        run_dir,
        training.checkpoint_every,
        state=state,
        keep_last=training.keep_last,
        best_metric=training.best_metric,
    )
    monitor = TrainingMonitor(run_dir, start.epoch)
    interrupt = InterruptCheckpoint(
        run_dir, train_data, state=state, agree=distribution.any_process
    )
    callbacks = [loader_sync, *_schedule_callbacks(training, train_data, learning_rate)]
    if start.metric_states:
        callbacks.append(MetricStateRestore(list(start.metric_states)))
    callbacks += [
        keras.callbacks.TerminateOnNaN(),
        checkpoint,
        monitor,
        *_optional_callbacks(training, run_dir),
    ]
    callbacks += list(extra_callbacks)
    callbacks.append(interrupt)  # last: on an epoch boundary the others record the epoch first

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
                train_data.set_epoch(first_epoch, first_batch)
                # The second phase continues the history the first one wrote.
                monitor.start_epoch = first_epoch
                model.fit(
                    train_data,
                    validation_data=val_data,
                    epochs=end_epoch,
                    initial_epoch=first_epoch,
                    callbacks=callbacks,
                    # The generator shuffles, by (seed, epoch); Keras' own shuffle would
                    # reorder its batches with Python's global RNG, unrepeatably.
                    shuffle=False,
                    # The one-line progress bar rewrites itself with \\r, which fills log files.
                    verbose=1 if sys.stdout.isatty() else 2,
                )
                # Early stopping or a diverged loss ends the run, not just the phase.
                if model.stop_training or checkpoint.diverged:
                    break
    except TrainingInterrupted as stopped:
        where = f"epoch {stopped.epoch} after {stopped.batch} batches"
        _log(run_dir, f"interrupted at {where}; saved {stopped.checkpoint}")
        return TrainingResult(run_dir, stopped.checkpoint, monitor.history, interrupted=stopped)
    final = latest_checkpoint(run_dir)
    if checkpoint.diverged:
        _log(run_dir, f"training diverged (loss not finite); the last good checkpoint is {final}")
    else:
        _log(run_dir, f"finished: {final}")
    return TrainingResult(run_dir, final, monitor.history)


def _schedule_callbacks(training, train_data, learning_rate) -> list:
    base_rate = learning_rate or training.learning_rate
    schedule = make_schedule(training, train_data.batches_per_epoch, base_rate)
    callbacks = [LearningRateControl(schedule)] if schedule else []
    if training.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=training.plateau_monitor,
                factor=training.decay_factor,
                patience=training.plateau_patience,
            )
        )
    return callbacks


def _optional_callbacks(training, run_dir) -> list:
    callbacks = []
    if training.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=training.early_stopping_monitor, patience=training.early_stopping_patience
            )
        )
    if training.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs")))
    return callbacks


def _describe_start(start: StartPoint, model) -> str:
    if start.checkpoint is None:
        return f"starting {model.name} from fresh weights"
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    return (
        f"resuming from {start.checkpoint} at epoch {start.epoch}, batch {start.batch}, "
        f"learning rate {rate:g}"
    )


def _log(run_dir: Path, message: str) -> None:
    """Print a line and append it, with the time, to train.log."""
    print(message, flush=True)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with open(run_dir / LOG_FILE, "a") as handle:
        handle.write(f"{stamp} {message}\n")
