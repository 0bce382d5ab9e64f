"""LoaderEpochSync: tells the training generator which epoch, and from which batch, starts."""

import keras


class LoaderEpochSync(keras.callbacks.Callback):
    """Set the generator's position at the start of each epoch Keras trains.

    The generator's sample order is a function of (seed, epoch). Keras also calls
    the generator's `on_epoch_end` outside training epochs (when a fit starts,
    for one), which moves it on by an epoch; driving it from the epoch number
    Keras trains keeps the order right, and `start_at` keeps the start batch of
    an epoch resumed mid-way.
    """

    def __init__(self, generator) -> None:
        super().__init__()
        self.generator = generator
        self.planned = (generator.epoch, generator.start_batch)

    def start_at(self, epoch: int, start_batch: int = 0) -> None:
        """Where the next fit begins: epoch `epoch` from batch `start_batch`."""
        self.planned = (epoch, start_batch)
        self.generator.set_epoch(epoch, start_batch)

    def on_epoch_begin(self, epoch, logs=None):
        planned_epoch, planned_batch = self.planned
        self.generator.set_epoch(epoch, planned_batch if epoch == planned_epoch else 0)
