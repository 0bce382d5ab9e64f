"""TrainingMonitor: the history (history.json, history.csv, training.png), every epoch."""

import time
from pathlib import Path

import keras

from pipeline.runs.history import append_row, load_history, write_history


def learning_rate_of(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class TrainingMonitor(keras.callbacks.Callback):
    """Append each epoch's logs and its learning rate to the history and redraw the plot.

    The rate is that of the epoch's first batch, read when the epoch begins, after
    LearningRateControl (earlier in the callback list) has set it: read at the epoch's
    end, it would show ReduceLROnPlateau's lowered rate beside the epoch trained before
    it. An epoch resumed mid-way keeps the rate it began with (`resumed_epoch_rate`, saved
    with the interrupt), so its row reads as an uninterrupted run's. `rate_changes`
    ((position in epochs, rate) of each --lr) are marked on the plot.

    `seconds`: the epoch's training time (validation included); an epoch resumed mid-way
    adds the time before the interrupt (`resumed_epoch_seconds`, saved with it).
    """

    def __init__(
        self,
        run_dir: str | Path,
        start_epoch: int = 0,
        *,
        resumed_epoch_rate: float | None = None,
        resumed_epoch_seconds: float = 0.0,
        rate_changes=(),
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.start_epoch = start_epoch
        self.history: dict[str, list] = {}
        self.resumed_epoch_rate = resumed_epoch_rate
        self.rate_changes = list(rate_changes)
        self.epoch_rate = None
        self.resumed_epoch_seconds = resumed_epoch_seconds
        self._epoch_began, self._carried_seconds = time.monotonic(), 0.0

    def on_train_begin(self, logs=None):
        self.history = load_history(self.run_dir, self.start_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        resumed, self.resumed_epoch_rate = self.resumed_epoch_rate, None
        self.epoch_rate = resumed if resumed is not None else learning_rate_of(self.model)
        self._carried_seconds, self.resumed_epoch_seconds = self.resumed_epoch_seconds, 0.0
        self._epoch_began = time.monotonic()

    def epoch_seconds(self) -> float:
        """The current epoch's training time so far (saved with an interrupt)."""
        return self._carried_seconds + time.monotonic() - self._epoch_began

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "learning_rate": self.epoch_rate}
        record["seconds"] = round(self.epoch_seconds(), 3)
        # ReduceLROnPlateau adds its (possibly lowered) rate to the logs: not this epoch's.
        logs = {key: value for key, value in (logs or {}).items() if key != "learning_rate"}
        record.update({key: float(value) for key, value in logs.items()})
        append_row(self.history, record)
        write_history(self.run_dir, self.history, self.rate_changes)
