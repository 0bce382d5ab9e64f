"""Keras callbacks the training loop uses."""

from pipeline.callbacks.checkpoints import EpochCheckpoint
from pipeline.callbacks.interrupt import (
    InterruptCheckpoint,
    MetricStateRestore,
    TrainingInterrupted,
)
from pipeline.callbacks.learning_rate import LearningRateControl, ResumablePlateau
from pipeline.callbacks.loader_epoch import LoaderEpochSync
from pipeline.callbacks.training_monitor import TrainingMonitor
from pipeline.history import load_history

__all__ = [
    "EpochCheckpoint",
    "InterruptCheckpoint",
    "LearningRateControl",
    "LoaderEpochSync",
    "MetricStateRestore",
    "TrainingInterrupted",
    "TrainingMonitor",
    "load_history",
    "ResumablePlateau",
]
