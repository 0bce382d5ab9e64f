"""What a network is: output shapes, parameters and multiply-adds, by stage or by layer."""

import re

import keras
import numpy as np

from pipeline.nn.presets import DEFAULT_INPUT_SHAPES, build_preset, spec_of

WEIGHTED_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)


def multiply_adds(layer) -> int:
    """Multiply-adds per image of a convolution or dense layer (0 for others).

    The papers' "FLOPs" (ResNet-50: 3.8 x 10^9) count multiply-adds.
    """
    if isinstance(layer, keras.layers.Conv2D):
        height, width, out_channels = layer.output.shape[1:]
        kernel_height, kernel_width = layer.kernel_size
        in_channels = layer.input.shape[-1]
        return int(height * width * kernel_height * kernel_width * in_channels * out_channels)
    if isinstance(layer, keras.layers.Dense):
        return int(layer.input.shape[-1] * layer.units)
    return 0


def group_of(layer_name: str) -> str:
    """'stem', 'stageN' or 'head' (normalisation counts with the stem)."""
    match = re.match(r"(stage\d+)_", layer_name)
    if match:
        return match.group(1)
    return "head" if layer_name.startswith(("head", "predictions")) else "stem"


def summarize(model: keras.Model, by_layer: bool = False) -> str:
    """A table of output shapes, parameters and multiply-adds, then the totals."""
    rows, groups = [], {}
    for layer in model.layers[1:]:
        params = int(sum(np.prod(weight.shape) for weight in layer.weights))
        macs = multiply_adds(layer)
        shape = tuple(layer.output.shape[1:])
        if by_layer:
            rows.append((layer.name, type(layer).__name__, shape, params, macs))
        entry = groups.setdefault(group_of(layer.name), [shape, 0, 0])
        entry[0], entry[1], entry[2] = shape, entry[1] + params, entry[2] + macs
    if not by_layer:
        rows = [(name, "", shape, params, macs) for name, (shape, params, macs) in groups.items()]
    lines = [f"{'name':40s} {'type':20s} {'output shape':22s} {'params':>12s} {'mult-adds':>14s}"]
    lines += [
        f"{name:40s} {kind:20s} {str(shape):22s} {params:12,d} {macs:14,d}"
        for name, kind, shape, params, macs in rows
    ]
    trainable = int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
    total = int(sum(np.prod(weight.shape) for weight in model.weights))
    depth = sum(
        1
        for layer in model.layers
        if isinstance(layer, WEIGHTED_LAYERS) and "shortcut" not in layer.name
    )
    macs = sum(multiply_adds(layer) for layer in model.layers)
    lines += [
        "",
        f"weighted layers (depth): {depth}",
        f"parameters: {trainable:,d} trainable ({trainable / 1e6:.2f}M), {total:,d} in all",
        f"multiply-adds per image: {macs:,d} ({macs / 1e9:.2f} G)",
    ]
    return "\n".join(lines)


def summarize_preset(name: str, num_classes: int, input_shape=None, by_layer=False) -> str:
    spec = spec_of(name)
    shape = input_shape or DEFAULT_INPUT_SHAPES[spec.stem]
    model = build_preset(name, num_classes, shape)
    header = f"{name}: {spec.source}\ninput {shape}, {num_classes} classes\n"
    return header + summarize(model, by_layer)


def plot(model: keras.Model, path) -> str:
    """Draw the architecture to a PNG with keras.utils.plot_model (needs pydot and graphviz)."""
    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True)
    except (ImportError, OSError) as error:
        return f"no drawing: {error} (install pydot and graphviz's dot to draw it)"
    return f"drawing: {path}"
