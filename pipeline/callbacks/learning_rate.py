"""LearningRateControl: sets the optimizer's rate from a schedule before every batch."""

import keras


class LearningRateControl(keras.callbacks.Callback):
    """rate = schedule(step), step counting optimizer updates since the start of training.

    The step is read from the optimizer once, at the start (it is saved in
    every checkpoint), then counted here: reading it on every batch would
    make the accelerator wait.
    """

    def __init__(self, schedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.step = 0

    def on_train_begin(self, logs=None):
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.schedule(self.step))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
