"""LoaderEpochSync: tells the training generator which epoch is starting."""

import keras


class LoaderEpochSync(keras.callbacks.Callback):
    """Call `generator.set_epoch(epoch)` at the start of each epoch.

    The generator's sample order is a function of (seed, epoch); driving it
    from the epoch number Keras trains (rather than from a counter of
    `on_epoch_end` calls, which Keras also makes outside training epochs)
    keeps the order right after a resume at `initial_epoch`.
    """

    def __init__(self, generator) -> None:
        super().__init__()
        self.generator = generator

    def on_epoch_begin(self, epoch, logs=None):
        # A new epoch starts at its first batch; the epoch the training loop positioned
        # the generator in (a mid-epoch resume) keeps its start batch.
        if epoch != self.generator.epoch:
            self.generator.set_epoch(epoch)
