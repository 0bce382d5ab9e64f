"""Ctrl+c (and SIGTERM) that costs at most the current batch.

The first SIGINT or SIGTERM (what `timeout`, `kill` and job schedulers send)
lets the current batch finish, saves interrupt.keras with the position (epoch,
batches done) and ends training with TrainingInterrupted; a second SIGINT
stops at once (Python's KeyboardInterrupt), a second SIGTERM terminates.
"""

import contextlib
import signal
import sys
from pathlib import Path

import keras
import numpy as np

from pipeline.runs.checkpoint_files import point_latest, save_checkpoint
from pipeline.runs.run_dir import INTERRUPT


def metric_states(model) -> list[list]:
    """The values of every metric variable (sums and counts), in model.metrics order."""
    return [
        [keras.ops.convert_to_numpy(variable).tolist() for variable in metric.variables]
        for metric in model.metrics
    ]


class MetricStateRestore(keras.callbacks.Callback):
    """Add the metric sums saved at the interrupt back into the resumed epoch's metrics.

    Done after its first batch: Keras builds the compiled metrics of a loaded model on
    the first train step, and resets every metric at the start of an epoch. Keras'
    metrics keep sums and counts, so adding the saved values gives the totals of
    the whole epoch.
    """

    def __init__(self, states: list[list]) -> None:
        super().__init__()
        self.states = states

    def on_train_batch_end(self, batch, logs=None):
        states, self.states = self.states, []
        metrics = self.model.metrics
        if not states or len(states) != len(metrics):
            return
        for metric, values in zip(metrics, states, strict=True):
            if len(metric.variables) != len(values):
                continue
            for variable, value in zip(metric.variables, values, strict=True):
                # A saved value of another shape (a damaged or older state) is left out:
                # the epoch's row then counts its batches after the resume only.
                try:
                    shape = np.shape(value)
                except ValueError:  # a ragged list: not a saved variable
                    continue
                if tuple(shape) != tuple(variable.shape):
                    continue
                variable.assign(variable + keras.ops.convert_to_tensor(value, variable.dtype))


# The signals that stop training after the current batch, and their names in messages.
STOP_SIGNALS = {signal.SIGINT: "ctrl+c", signal.SIGTERM: "SIGTERM"}
DEFAULT_HANDLERS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


class TrainingInterrupted(Exception):
    """Training stopped on request; `checkpoint` resumes it from (epoch, batch): `epoch`
    epochs and `batch` batches of the next one done."""

    def __init__(
        self, checkpoint: Path, epoch: int, batch: int, batches_per_epoch: int, by="ctrl+c"
    ) -> None:
        self.checkpoint, self.epoch, self.batch = checkpoint, epoch, batch
        # What asked for the stop: "ctrl+c" or "SIGTERM".
        self.by = by
        # Numbered as Keras' progress line numbers epochs.
        where = (
            f"in epoch {epoch + 1} after batch {batch} of {batches_per_epoch}"
            if batch
            else f"after epoch {epoch}"
        )
        super().__init__(f"interrupted by {by} {where}; saved {checkpoint}")


class InterruptCheckpoint(keras.callbacks.Callback):
    """Saves and stops after the batch during which ctrl+c was pressed. Put it last in the
    callback list: on an epoch's last batch it waits for the epoch's end, so that the
    other callbacks record that epoch first."""

    def __init__(self, run_dir, generator, *, state=None, agree=None):
        super().__init__()
        self.run_dir = Path(run_dir)
        # The training generator knows the batches per epoch and, after a mid-epoch
        # resume, how many batches of the current epoch were done before this fit.
        self.generator = generator
        # The checkpoint's state: a dict, or a function giving it when it is saved.
        self.state = state or {}
        # Workers that step together must stop after the same batch: `agree` turns this
        # process's request into "any worker asked" (a collective call, made by every
        # worker after every batch). One process: the request itself.
        self.agree = agree or (lambda flag: flag)
        self.requested = False
        self.requested_by = "ctrl+c"
        self.epoch = 0
        self.offset = 0

    @contextlib.contextmanager
    def listening(self):
        """Catch the first SIGINT or SIGTERM while training; restore the handlers after."""
        previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

        def request_stop(signum, frame):
            self.requested = True
            self.requested_by = STOP_SIGNALS[signum]
            # A second signal gets its default: KeyboardInterrupt for ctrl+c, at once.
            for number in STOP_SIGNALS:
                signal.signal(number, DEFAULT_HANDLERS[number])
            print(
                f"\n{self.requested_by}: finishing the current batch, then saving "
                f"({'ctrl+c' if signum == signal.SIGINT else 'SIGTERM'} again quits at once)",
                file=sys.stderr,
                flush=True,
            )

        for number in STOP_SIGNALS:
            signal.signal(number, request_stop)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def on_epoch_begin(self, epoch, logs=None):
        # LoaderEpochSync, earlier in the list, has set the generator's position.
        self.epoch, self.offset = epoch, self.generator.start_batch

    def on_train_batch_end(self, batch, logs=None):
        # The agreed answer is kept apart from `requested`, which only the signal
        # handler sets: a ctrl+c arriving during the agreement is kept for the next batch.
        stop = self.agree(self.requested)
        done = self.offset + batch + 1
        if stop and done < self.generator.batches_per_epoch:
            self._save_and_stop(self.epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        # After the last epoch there is nothing to resume: training ends as usual,
        # with its final checkpoint.
        stop = self.agree(self.requested)
        if stop and epoch + 1 < self.params.get("epochs", 0):
            self._save_and_stop(epoch + 1, 0)

    def _save_and_stop(self, epoch: int, batch: int) -> None:
        # The running sums of the epoch's metrics, so that the resumed epoch's history
        # row covers its batches from before the interrupt too.
        state = self.state() if callable(self.state) else self.state
        extra = {**state, "metric_states": metric_states(self.model) if batch else []}
        path = save_checkpoint(
            self.model, self.run_dir / INTERRUPT, epoch=epoch, batch=batch, extra=extra
        )
        point_latest(self.run_dir, path)
        raise TrainingInterrupted(
            path, epoch, batch, self.generator.batches_per_epoch, by=self.requested_by
        )
