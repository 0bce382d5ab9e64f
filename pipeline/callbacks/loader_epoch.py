"""LoaderEpochSync: tells the training generator which epoch is starting."""

import keras


class LoaderEpochSync(keras.callbacks.Callback):
    """Call `generator.set_epoch(epoch)` at the start of each epoch.

    The generator's sample order is a function of (seed, epoch); driving it
    from the epoch number Keras trains (rather than from a counter of
    `on_epoch_end` calls, which Keras also makes outside training epochs)
    keeps the order right after a resume at `initial_epoch`.
    """

    def __init__(self, generator, start_batch: int = 0) -> None:
        super().__init__()
        self.generator = generator
        # The first epoch of a mid-epoch resume starts at this batch; the others at 0.
        self.start_batch = start_batch

    def on_epoch_begin(self, epoch, logs=None):
        self.generator.set_epoch(epoch, self.start_batch)
        self.start_batch = 0
