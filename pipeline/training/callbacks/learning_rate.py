"""The callbacks that set the optimizer's rate: the only writers of it during training.

LearningRateControl applies pipeline.runs.learning_rate.rate_at before every batch;
ResumablePlateau is Keras' ReduceLROnPlateau with its counters saved in the
checkpoints, so that a resumed plateau run lowers the rate when an
uninterrupted one would.
"""

import keras


class LearningRateControl(keras.callbacks.Callback):
    """Set the rate of each batch to `rate_of(epoch, batch)` (None: leave the optimizer's).

    The batch counts from the start of the epoch, also in a fit that resumes an epoch
    mid-way (the generator knows where it started). The rate is assigned only when it
    changes, so a constant rate costs nothing per batch.
    """

    def __init__(self, rate_of, generator) -> None:
        super().__init__()
        self.rate_of = rate_of
        self.generator = generator
        self.epoch = 0
        self.offset = 0
        self.assigned = None

    def on_epoch_begin(self, epoch, logs=None):
        # LoaderEpochSync, earlier in the list, has set the generator's position. The
        # first batch's rate is set now, so that the epoch's rate can be read before it.
        self.epoch, self.offset = epoch, self.generator.start_batch
        self._apply(0)

    def on_train_batch_begin(self, batch, logs=None):
        self._apply(batch)

    def _apply(self, batch: int) -> None:
        rate = self.rate_of(self.epoch, self.offset + batch)
        if rate is not None and rate != self.assigned:
            self.model.optimizer.learning_rate.assign(rate)
            self.assigned = rate


class ResumablePlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters (best value, epochs waited, cooldown) carry over
    a resume and the two fits of a mid-epoch resume, instead of restarting at zero."""

    def __init__(self, *args, saved: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.saved = saved or {}
        self.started = False

    def on_train_begin(self, logs=None):
        if self.started:
            return  # the second fit of a resume goes on counting
        self.started = True
        self._reset()
        if self.saved:
            self.best = self.saved.get("best")
            self.wait = int(self.saved.get("wait", 0))
            self.cooldown_counter = int(self.saved.get("cooldown_counter", 0))

    def counters(self) -> dict:
        """What a checkpoint saves of this callback."""
        best = None if self.best is None else float(self.best)
        return {"best": best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}
