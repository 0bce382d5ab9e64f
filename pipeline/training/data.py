"""The data a training process feeds: its train and validation generators."""

import dataclasses
from pathlib import Path

from pipeline.config import ExperimentConfig
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import check_same_build, read_split_info
from pipeline.datasets.identity import check_split_matches, require_split
from pipeline.errors import UserError
from pipeline.io import HDF5DatasetGenerator, LoaderOptions
from pipeline.io.epoch_order import Shard
from pipeline.io.storage import STORAGE_MODES, fits_in_memory


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
    loading = LoaderOptions(
        batch_size=batch_size,
        image_size=data.image_size or None,
        storage=data.storage,
        shuffle_buffer=data.shuffle_buffer or None,
        batch_multiple=distribution.batch_multiple,
        workers=data.workers,
    )
    train_path = split_path(data.dataset_dir, data.train_split)
    train_storage = data.storage
    if workers > 1:
        train_storage = _agreed_storage(data.storage, train_path, distribution)
    # After the collective calls, which every worker makes, data or not; before the loader
    # reads the split and the model is built: not one step on another data set.
    check_split_matches(data, read_split_info(require_split(data, train_path)))
    train_data = HDF5DatasetGenerator(
        train_path,
        dataclasses.replace(
            loading,
            shuffle=True,
            augment=data.augment,
            seed=training.seed,
            storage=train_storage,
            # Workers step together: every one must have the same number of batches.
            shard=Shard(distribution.process_index, workers, equal=True),
        ),
    )
    val_path = split_path(data.dataset_dir, data.val_split)
    val_data = None
    if not val_path.exists():
        _refuse_validation_settings(training, val_path)
    else:
        val_info = read_split_info(val_path)
        check_split_matches(data, val_info)
        val_batch = min(batch_size, val_info.num_samples)
        val_batch -= val_batch % loading.batch_multiple
        val_data = HDF5DatasetGenerator(
            val_path, dataclasses.replace(loading, batch_size=val_batch, shuffle=False)
        )
        check_same_build(train_data.info, val_data.info)
        _check_compatible(train_data, val_data)
    return train_data, val_data


def _check_compatible(train_data, val_data) -> None:
    """Train and val must feed one model: the same classes and image shape (a 64 px
    train split beside a 32 px val split would fail inside the fit, after the run's
    records were written)."""
    train, val = train_data.info, val_data.info
    if tuple(train.class_names) != tuple(val.class_names):
        raise UserError(
            f"{val.path} has other classes than {train.path} ({val.num_classes} against "
            f"{train.num_classes}, or another order); rebuild the data set with --overwrite"
        )
    if train_data.image_shape != val_data.image_shape:
        raise UserError(
            f"{val.path} serves images of {val_data.image_shape}, {train.path} of "
            f"{train_data.image_shape}; rebuild the data set with --overwrite (or set "
            f"data.image_size for JPEG-encoded splits)"
        )


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


def _refuse_validation_settings(training, val_path: Path) -> None:
    """Without a validation split, settings that watch a val_ metric would never act
    (Keras only warns, once per epoch): refuse them, naming the setting."""
    watched = {"training.best_metric": training.best_metric}
    if training.schedule == "plateau":
        watched["training.plateau_monitor"] = training.plateau_monitor
    if training.early_stopping_patience:
        watched["training.early_stopping_monitor"] = training.early_stopping_monitor
    for key, metric in watched.items():
        if metric.startswith("val_"):
            raise UserError(
                f"{key} = {metric!r} watches the validation split, but {val_path} does not "
                f"exist; build one (build_dataset.py, e.g. --val-size) or watch a training "
                f"metric ({metric.removeprefix('val_')!r})"
            )
