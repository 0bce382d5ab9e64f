"""ResNets as plain functions: original (He et al. 2015) and pre-activation (He et al. 2016).

Built in the manner of keras/src/applications/resnet.py: a stem, stages of
residual blocks, a head; every layer is named by its position
(`stage2_block3_conv2`), so summaries and checkpoints can be read by a
person. What varies between networks is data, a `ResNetSpec` (see presets).
"""

import contextlib
import sys

import keras
from keras import layers

from pipeline.nn.layers import SubtractMeanImage, ZeroPadShortcut
from pipeline.nn.spec import BOTTLENECK_EXPANSION, ResNetSpec

# Channels-last everywhere: the HDF5 files store (N, H, W, 3).
CHANNEL_AXIS = -1
# Recursion frames Keras needs per weighted layer when it maps or loads a deep graph.
FRAMES_PER_WEIGHTED_LAYER = 20


def build_resnet(
    spec: ResNetSpec,
    *,
    num_classes: int,
    input_shape=(None, None, 3),
    mean=None,
    std=None,
    mean_image=None,
    name: str = "resnet",
) -> keras.Model:
    """The network of `spec`, taking raw RGB images on the 0-255 scale.

    Its first layers normalise with the data set's statistics, so a saved
    model is self-contained: per-channel `mean` and `std` (0-255), or the
    per-pixel `mean_image` (H, W, 3) as in the papers' CIFAR setup (then
    divided by `std` when given). Without statistics it scales to [0, 1].
    `input_shape` (None, None, 3) gives a fully-convolutional model. The
    softmax runs in float32 so that mixed precision never rounds it.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _normalize(inputs, mean, std, mean_image)
    x = _stem(x, spec)
    block = {
        ("basic", True): preact_basic_block,
        ("bottleneck", True): preact_bottleneck_block,
        ("basic", False): basic_block,
        ("bottleneck", False): bottleneck_block,
    }[(spec.block, spec.preactivation)]
    for stage_index, (num_blocks, filters) in enumerate(
        zip(spec.stages, spec.filters[1:], strict=True)
    ):
        for block_index in range(num_blocks):
            stride = 2 if stage_index > 0 and block_index == 0 else 1
            force_projection = spec.project_every_stage and block_index == 0
            x = block(
                x,
                filters,
                stride,
                spec,
                force_projection,
                f"stage{stage_index + 1}_block{block_index + 1}",
            )
    if spec.preactivation:
        x = _bn_relu(x, spec, "head")
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dense(
        num_classes,
        kernel_initializer=spec.initializer,
        kernel_regularizer=_regularizer(spec),
        name="head_dense",
    )(x)
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    with deep_graph_recursion(spec.depth):
        return keras.Model(inputs, outputs, name=name)


@contextlib.contextmanager
def deep_graph_recursion(depth: int):
    """Keras maps a functional graph recursively, a few frames per layer: ResNet-1202's
    ~4,000 layers exceed Python's default limit of 1,000 frames."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, FRAMES_PER_WEIGHTED_LAYER * depth))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


# -- blocks -----------------------------------------------------------------------


def preact_basic_block(x, filters, stride, spec, force_projection, name):
    """BN-ReLU, 3x3 (stride), BN-ReLU, 3x3, plus the shortcut (He 2016, Fig. 1b)."""
    preactivated = _bn_relu(x, spec, f"{name}_preact")
    shortcut = _shortcut(x, preactivated, filters, stride, spec, force_projection, name)
    y = _conv(filters, 3, stride, spec, f"{name}_conv1")(preactivated)
    y = _bn_relu(y, spec, f"{name}_conv1")
    y = _conv(filters, 3, 1, spec, f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def preact_bottleneck_block(x, filters, stride, spec, force_projection, name):
    """BN-ReLU, 1x1 (filters/4), 3x3 (filters/4, stride), 1x1 (filters), plus the shortcut.

    The stride sits on the 3x3 convolution, as in the authors' code; a
    projection shortcut takes the pre-activated input (the paper's Fig. 5).
    """
    width = filters // BOTTLENECK_EXPANSION
    preactivated = _bn_relu(x, spec, f"{name}_preact")
    shortcut = _shortcut(x, preactivated, filters, stride, spec, force_projection, name)
    y = _conv(width, 1, 1, spec, f"{name}_conv1")(preactivated)
    y = _bn_relu(y, spec, f"{name}_conv1")
    y = _conv(width, 3, stride, spec, f"{name}_conv2")(y)
    y = _bn_relu(y, spec, f"{name}_conv2")
    y = _conv(filters, 1, 1, spec, f"{name}_conv3")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def basic_block(x, filters, stride, spec, force_projection, name):
    """3x3 (stride)-BN-ReLU, 3x3-BN, add the shortcut, ReLU (He 2015, Fig. 2)."""
    shortcut = _shortcut(x, x, filters, stride, spec, force_projection, name)
    y = _conv(filters, 3, stride, spec, f"{name}_conv1")(x)
    y = _bn_relu(y, spec, f"{name}_conv1")
    y = _conv(filters, 3, 1, spec, f"{name}_conv2")(y)
    y = _bn(y, spec, f"{name}_conv2_bn")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def bottleneck_block(x, filters, stride, spec, force_projection, name):
    """1x1 (filters/4, stride), 3x3, 1x1 (filters), each with BN, add, ReLU (He 2015, Fig. 5).

    The stride sits on the first 1x1 convolution, as in the paper's released
    models (torchvision's "v1.5" moves it to the 3x3; the parameters are the same).
    """
    width = filters // BOTTLENECK_EXPANSION
    shortcut = _shortcut(x, x, filters, stride, spec, force_projection, name)
    y = _conv(width, 1, stride, spec, f"{name}_conv1")(x)
    y = _bn_relu(y, spec, f"{name}_conv1")
    y = _conv(width, 3, 1, spec, f"{name}_conv2")(y)
    y = _bn_relu(y, spec, f"{name}_conv2")
    y = _conv(filters, 1, 1, spec, f"{name}_conv3")(y)
    y = _bn(y, spec, f"{name}_conv3_bn")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _shortcut(x, activated, filters, stride, spec, force_projection, name):
    """Identity, zero-padded identity (option A) or 1x1 projection (option B)."""
    shape_changes = stride != 1 or x.shape[CHANNEL_AXIS] != filters
    if not shape_changes and not force_projection:
        return x
    if spec.shortcut == "A" and not force_projection:
        return ZeroPadShortcut(filters, stride, name=f"{name}_shortcut_pad")(x)
    projected = _conv(filters, 1, stride, spec, f"{name}_shortcut_conv")(activated)
    if not spec.preactivation:
        projected = _bn(projected, spec, f"{name}_shortcut_bn")
    return projected


# -- stem, normalisation and small pieces ----------------------------------------------


def _stem(x, spec):
    """CIFAR: 3x3 stride 1. Tiny ImageNet: 5x5, BN-ReLU, 3x3 max pool stride 2.
    ImageNet: 7x7 stride 2, BN-ReLU, 3x3 max pool stride 2 (padded as spec.stem_padding
    says)."""
    if spec.stem == "cifar":
        x = _conv(spec.filters[0], 3, 1, spec, "stem_conv")(x)
        # Pre-activation networks normalise in the first block instead.
        return x if spec.preactivation else _bn_relu(x, spec, "stem")
    kernel, stride = (5, 1) if spec.stem == "tiny_imagenet" else (7, 2)
    if spec.stem_padding == "symmetric":
        x = layers.ZeroPadding2D(kernel // 2, name="stem_pad")(x)
        x = _conv(spec.filters[0], kernel, stride, spec, "stem_conv", padding="valid")(x)
        x = _bn_relu(x, spec, "stem")
        # After the ReLU every value is >= 0: zeros pad as -inf would.
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        return layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    x = _conv(spec.filters[0], kernel, stride, spec, "stem_conv")(x)
    x = _bn_relu(x, spec, "stem")
    return layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)


def _normalize(inputs, mean, std, mean_image):
    if mean_image is not None:
        layer = SubtractMeanImage(tuple(mean_image.shape), name="subtract_mean_image")
        x = layer(inputs)
        layer.mean_image.assign(mean_image)
        if std is None:
            return x
        return layers.Normalization(
            mean=[0.0, 0.0, 0.0], variance=[float(v) ** 2 for v in std], name="normalize"
        )(x)
    if mean is not None and std is not None:
        variance = [float(value) ** 2 for value in std]
        return layers.Normalization(mean=list(mean), variance=variance, name="normalize")(inputs)
    return layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)


def _conv(filters, kernel_size, stride, spec, name, padding="same"):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer=spec.initializer,
        kernel_regularizer=_regularizer(spec),
        name=name,
    )


def _bn(x, spec, name):
    return layers.BatchNormalization(
        axis=CHANNEL_AXIS, epsilon=spec.bn_epsilon, momentum=spec.bn_momentum, name=name
    )(x)


def _bn_relu(x, spec, name):
    x = _bn(x, spec, f"{name}_bn")
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _regularizer(spec):
    return keras.regularizers.L2(spec.l2) if spec.l2 else None
