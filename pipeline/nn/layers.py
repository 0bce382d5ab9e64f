"""The two layers Keras lacks: the zero-padded identity shortcut and per-pixel mean subtraction.

Both are registered as serializable, so `.keras` files that use them load
wherever `pipeline.nn` is imported (pipeline.models.load_model does it).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="pipeline")
class ZeroPadShortcut(keras.layers.Layer):
    """He et al. (2015) shortcut option A: subsample by `stride`, pad channels with zeros.

    The identity shortcut of a block whose output has more channels than its
    input: parameter-free, as in the paper's CIFAR networks.
    """

    def __init__(self, filters: int, stride: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.stride = stride

    def call(self, inputs):
        subsampled = inputs[:, :: self.stride, :: self.stride, :]
        extra = self.filters - inputs.shape[-1]
        return ops.pad(subsampled, [[0, 0], [0, 0], [0, 0], [0, extra]])

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def reduced(size):
            return None if size is None else -(-size // self.stride)

        return (batch, reduced(height), reduced(width), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


@keras.saving.register_keras_serializable(package="pipeline")
class SubtractMeanImage(keras.layers.Layer):
    """Subtract the train split's per-pixel mean image (the papers' CIFAR input).

    The mean image is a non-trainable weight, so it is saved with the model's
    weights and a `.keras` file stays self-contained.
    """

    def __init__(self, image_shape, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.mean_image = self.add_weight(
            shape=self.image_shape, initializer="zeros", trainable=False, name="mean_image"
        )

    def call(self, inputs):
        return ops.cast(inputs, self.compute_dtype) - ops.cast(self.mean_image, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape)}
