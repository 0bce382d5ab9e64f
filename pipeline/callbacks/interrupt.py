"""Ctrl+c that costs at most the current batch.

The first SIGINT lets the current batch finish, saves interrupt.keras with
the position (epoch, batches done) and ends training with TrainingInterrupted;
a second SIGINT stops at once (Python's KeyboardInterrupt).
"""

import contextlib
import signal
import sys
from pathlib import Path

import keras

from pipeline.run_dir import INTERRUPT, point_latest, save_checkpoint


class TrainingInterrupted(Exception):
    """Training stopped on request; `checkpoint` resumes it."""

    def __init__(self, checkpoint: Path, epoch: int, batch: int) -> None:
        super().__init__(f"interrupted at epoch {epoch} after {batch} batches")
        self.checkpoint, self.epoch, self.batch = checkpoint, epoch, batch


class InterruptCheckpoint(keras.callbacks.Callback):
    """Saves and stops after the batch during which ctrl+c was pressed. Put it last in the
    callback list: on an epoch's last batch it waits for the epoch's end, so that the
    other callbacks record that epoch first."""

    def __init__(self, run_dir, batches_per_epoch: int, *, state=None, start_batch: int = 0):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.batches_per_epoch = batches_per_epoch
        self.state = state or {}
        # Batches of the first epoch already done before this fit (a mid-epoch resume).
        self.start_batch = start_batch
        self.requested = False
        self.epoch = 0
        self.offset = 0

    @contextlib.contextmanager
    def listening(self):
        """Catch the first SIGINT while training; restore the previous handler after."""
        previous = signal.getsignal(signal.SIGINT)

        def request_stop(signum, frame):
            self.requested = True
            # A second ctrl+c gets Python's default: KeyboardInterrupt, at once.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print(
                "\nctrl+c: finishing the current batch, then saving (ctrl+c again quits at once)",
                file=sys.stderr,
                flush=True,
            )

        signal.signal(signal.SIGINT, request_stop)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.offset, self.start_batch = self.start_batch, 0

    def on_train_batch_end(self, batch, logs=None):
        done = self.offset + batch + 1
        if self.requested and done < self.batches_per_epoch:
            self._save_and_stop(self.epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        if self.requested:
            self._save_and_stop(epoch + 1, 0)

    def _save_and_stop(self, epoch: int, batch: int) -> None:
        path = save_checkpoint(
            self.model, self.run_dir / INTERRUPT, epoch=epoch, batch=batch, extra=self.state
        )
        point_latest(self.run_dir, path)
        raise TrainingInterrupted(path, epoch, batch)
