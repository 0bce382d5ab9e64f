"""Keras callbacks the training loop uses."""

from pipeline.callbacks.checkpoints import EpochCheckpoint
from pipeline.callbacks.interrupt import (
    InterruptCheckpoint,
    MetricStateRestore,
    TrainingInterrupted,
)
from pipeline.callbacks.learning_rate import LearningRateControl
from pipeline.callbacks.loader_epoch import LoaderEpochSync
from pipeline.callbacks.schedules import make_schedule, polynomial_decay
from pipeline.callbacks.training_monitor import TrainingMonitor, load_history

__all__ = [
    "EpochCheckpoint",
    "InterruptCheckpoint",
    "LearningRateControl",
    "LoaderEpochSync",
    "MetricStateRestore",
    "TrainingInterrupted",
    "TrainingMonitor",
    "load_history",
    "make_schedule",
    "polynomial_decay",
]
