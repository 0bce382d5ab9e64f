"""Keras callbacks the training loop uses."""

from pipeline.callbacks.epoch_checkpoint import (
    EpochCheckpoint,
    checkpoint_path,
    list_checkpoints,
    save_model_atomically,
)
from pipeline.callbacks.loader_epoch import LoaderEpochSync
from pipeline.callbacks.schedules import polynomial_decay
from pipeline.callbacks.training_monitor import TrainingMonitor, load_history

__all__ = [
    "EpochCheckpoint",
    "LoaderEpochSync",
    "TrainingMonitor",
    "checkpoint_path",
    "list_checkpoints",
    "load_history",
    "polynomial_decay",
    "save_model_atomically",
]
