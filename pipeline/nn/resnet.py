"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Built as plain functions in the manner of keras/src/applications/resnet.py:
every layer is named by its position (`stage2_block3_conv2`), so weights,
summaries and checkpoints can be read by a person.
"""

import keras
from keras import layers

# Channels-last everywhere: the HDF5 files store (N, H, W, 3).
CHANNEL_AXIS = -1


def _conv(filters, kernel_size, strides, l2, name):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
        name=name,
    )


def _bn_relu(x, bn_epsilon, bn_momentum, name):
    x = layers.BatchNormalization(
        axis=CHANNEL_AXIS, epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_bn"
    )(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def preact_bottleneck_block(x, filters, stride, *, l2, bn_epsilon, bn_momentum, name):
    """BN-ReLU, then 1x1 (filters/4), 3x3 (filters/4, stride), 1x1 (filters), plus shortcut.

    The shortcut is the identity unless the shape changes, in which case a 1x1
    projection is applied to the pre-activated input (the paper's Fig. 5).
    The stride sits on the 3x3 convolution, as in the authors' code.
    """
    bottleneck = filters // 4
    preactivated = _bn_relu(x, bn_epsilon, bn_momentum, f"{name}_preact")
    if stride != 1 or x.shape[CHANNEL_AXIS] != filters:
        shortcut = _conv(filters, 1, stride, l2, f"{name}_shortcut_conv")(preactivated)
    else:
        shortcut = x
    y = _conv(bottleneck, 1, 1, l2, f"{name}_conv1")(preactivated)
    y = _bn_relu(y, bn_epsilon, bn_momentum, f"{name}_conv1")
    y = _conv(bottleneck, 3, stride, l2, f"{name}_conv2")(y)
    y = _bn_relu(y, bn_epsilon, bn_momentum, f"{name}_conv2")
    y = _conv(filters, 1, 1, l2, f"{name}_conv3")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def build_resnet(
    *,
    input_shape,
    num_classes: int,
    mean,
    std,
    stages=(1, 1, 1),
    filters=(16, 16, 32, 64),
    l2: float = 1e-4,
    bn_epsilon: float = 2e-5,
    bn_momentum: float = 0.9,
    name: str = "preact_resnet",
) -> keras.Model:
    """A pre-activation bottleneck ResNet with the CIFAR stem (3x3 convolution, stride 1).

    The model takes raw RGB images on the 0-255 scale; its first layer
    normalises them with the data set's per-channel `mean` and `std` (0-255
    scale), so a saved model is self-contained. `filters` gives the stem's
    channels, then each stage's output channels. The first stage keeps the
    resolution; each later stage halves it. The softmax runs in float32 so
    that mixed precision never rounds the probabilities.
    """
    settings = dict(l2=l2, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    variance = [float(value) ** 2 for value in std]
    x = layers.Normalization(
        axis=CHANNEL_AXIS, mean=list(mean), variance=variance, name="normalize"
    )(inputs)
    x = _conv(filters[0], 3, 1, l2, "stem_conv")(x)
    for stage_index, (num_blocks, stage_filters) in enumerate(
        zip(stages, filters[1:], strict=True)
    ):
        for block_index in range(num_blocks):
            stride = 2 if stage_index > 0 and block_index == 0 else 1
            x = preact_bottleneck_block(
                x,
                stage_filters,
                stride,
                name=f"stage{stage_index + 1}_block{block_index + 1}",
                **settings,
            )
    x = _bn_relu(x, bn_epsilon, bn_momentum, "head")
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dense(
        num_classes,
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
        name="head_dense",
    )(x)
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)
