"""RunProgress: Keras' progress line, numbered as the run is."""

import keras


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, showing `Epoch 14/20` and batches `6/28 ... 28/28` also in the
    fit that finishes an epoch resumed mid-way (Keras itself would show `Epoch 14/14`
    and count from 1 over the remaining batches)."""

    def __init__(self, total_epochs: int, generator) -> None:
        super().__init__()
        self.total_epochs = total_epochs
        self.generator = generator
        self.offset = 0

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs
        self.target = self.generator.batches_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        # LoaderEpochSync, earlier in the list, has set the generator's position.
        self.offset = self.generator.start_batch
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(self.offset + batch, logs)
