"""Keras callbacks the training loop uses."""

from pipeline.runs.history import load_history
from pipeline.training.callbacks.checkpoints import EpochCheckpoint
from pipeline.training.callbacks.interrupt import (
    InterruptCheckpoint,
    MetricStateRestore,
    TrainingInterrupted,
)
from pipeline.training.callbacks.learning_rate import LearningRateControl, ResumablePlateau
from pipeline.training.callbacks.loader_epoch import LoaderEpochSync
from pipeline.training.callbacks.training_monitor import TrainingMonitor

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
