"""Keras' ImageNet weights (keras.applications ResNet50/101/152) in this project's networks.

keras.applications' ResNets are the paper's (He et al. 2015), different in form only:
- every convolution has a bias, and a BatchNormalization follows each one. BN(z + b)
  with moving mean m equals BN(z) with moving mean m - b, so the bias moves into
  the mean (exact in inference; in training BN subtracts the batch mean, bias and all);
- the first convolution reads BGR with the ImageNet mean subtracted ("caffe"
  preprocessing): this project's networks read RGB, so its kernel's input channels
  are reversed, and the mean is the checkpoint's normalisation;
- the stem pads symmetrically: the keras_resnet presets do too (stem_padding).
So the weights map exactly onto the presets keras_resnet50, keras_resnet101 and
keras_resnet152; tests/nn/test_keras_weights.py compares the outputs.
"""

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from pipeline.errors import UserError

# --init keras:NAME: the keras.applications function, and the preset it fits.
KERAS_NETWORKS = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152"}
# The mean that "caffe" preprocessing subtracts, in RGB order (Keras lists it as BGR).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
# The md5 of each weights file (with the classifier, without), as keras.applications
# checks a download: a file that differs is not Keras' (damaged, or another network's).
WEIGHTS_MD5 = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
WEIGHTS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# stage2_block3_conv1(_bn) and stage2_block1_shortcut_conv/_bn: conv3_block3_1_conv/_bn
# and conv3_block1_0_conv/_bn in keras.applications.
_BLOCK_LAYER = re.compile(r"stage(\d+)_block(\d+)_(?:conv(\d)(_bn)?|shortcut_(conv|bn))")


def check_network_name(name: str) -> None:
    if name not in KERAS_NETWORKS:
        known = ", ".join(f"keras:{known}" for known in KERAS_NETWORKS)
        raise UserError(
            f"keras:{name} is not a keras.applications ResNet this project maps; "
            f"choose {known} (ResNet50V2 and the others differ from every preset)"
        )


def preset_for(name: str) -> str:
    """The preset whose network keras:NAME's weights fit."""
    check_network_name(name)
    return f"keras_{name}"


def weights_file(name: str) -> Path:
    """Where Keras keeps keras:NAME's ImageNet weights (the file without the classifier
    first); a one-line UserError, saying where to put it, when it is not there."""
    check_network_name(name)
    names = [
        f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        f"{name}_weights_tf_dim_ordering_tf_kernels.h5",
    ]
    # As Keras' get_file looks: $KERAS_HOME, else ~/.keras, else (home not writable)
    # /tmp/.keras.
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    folders = [Path(home) / "models", Path("/tmp/.keras/models")]
    for folder in folders:
        for file_name in names:
            if (folder / file_name).is_file():
                return folder / file_name
    raise UserError(
        f"keras:{name} needs Keras' ImageNet weights, {names[0]}, in {folders[0]} (no "
        f"network is used to fetch it): download {WEIGHTS_ORIGIN}{names[0]} elsewhere and "
        f"copy it there (KERAS_HOME moves that folder)"
    )


def check_keras_file(path: Path, name: str) -> None:
    """A one-line UserError unless `path` has the md5 Keras publishes for it."""
    expected = WEIGHTS_MD5[name][1 if path.name.endswith("_notop.h5") else 0]
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise UserError(
            f"{path} is not Keras' file (md5 {digest.hexdigest()}, Keras publishes "
            f"{expected}): delete it and download {WEIGHTS_ORIGIN}{path.name} again"
        )


def keras_application(name: str, *, include_top: bool, weights_path=None):
    """keras.applications' network keras:NAME, with the weights of `weights_path` (None:
    random, as a test compares against)."""
    import keras

    build = getattr(keras.applications, KERAS_NETWORKS[name])
    shape = (224, 224, 3) if include_top else (None, None, 3)
    model = build(weights=None, include_top=include_top, input_shape=shape)
    if weights_path is not None:
        try:
            model.load_weights(str(weights_path))
        except Exception as error:  # h5py and Keras raise many types for a bad file
            reason = " ".join(str(error).split())[:200]
            raise UserError(
                f"cannot read Keras' weights {weights_path}: {type(error).__name__}: {reason}; "
                f"delete it and download it again from {WEIGHTS_ORIGIN}"
            ) from None
    return model


def keras_layer_name(name: str) -> str | None:
    """The keras.applications layer of this project's layer `name` (None: it has none)."""
    fixed = {"stem_conv": "conv1_conv", "stem_bn": "conv1_bn", "head_dense": "predictions"}
    if name in fixed:
        return fixed[name]
    match = _BLOCK_LAYER.fullmatch(name)
    if match is None:
        return None
    stage, block, conv_number, bn_suffix, shortcut_kind = match.groups()
    prefix = f"conv{int(stage) + 1}_block{block}"
    if shortcut_kind:
        return f"{prefix}_0_{shortcut_kind}"
    return f"{prefix}_{conv_number}_{'bn' if bn_suffix else 'conv'}"


def _bn_after(conv_name: str) -> str:
    """The BatchNormalization that follows convolution `conv_name` (see pipeline/nn/resnet)."""
    if conv_name == "stem_conv":
        return "stem_bn"
    if conv_name.endswith("_shortcut_conv"):
        return conv_name[: -len("conv")] + "bn"
    return conv_name + "_bn"


def copy_keras_weights(source, target, *, include_head: bool) -> None:
    """Copy keras.applications model `source`'s weights into `target` (a keras_resnet
    preset's model), biases folded into the BN means, the first kernel made RGB."""
    source_layers = {layer.name: layer for layer in source.layers}
    biases = {}  # a BN's name -> the bias of the convolution before it
    for layer in target.layers:
        if not layer.weights or (layer.name == "head_dense" and not include_head):
            continue
        keras_name = keras_layer_name(layer.name)
        if keras_name is None or keras_name not in source_layers:
            if layer.name in ("normalize", "subtract_mean_image"):
                continue
            raise UserError(f"layer {layer.name} has no counterpart in {source.name}")
        weights = source_layers[keras_name].get_weights()
        if keras_name.endswith("_conv") and len(weights) == 2:
            kernel, bias = weights
            biases[_bn_after(layer.name)] = bias
            weights = [kernel[:, :, ::-1, :] if layer.name == "stem_conv" else kernel]
        elif layer.name in biases:
            gamma, beta, mean, variance = weights
            weights = [gamma, beta, mean - biases[layer.name], variance]
        _set_weights(layer, weights, keras_name)


def _set_weights(layer, weights, keras_name) -> None:
    shapes = [tuple(weight.shape) for weight in layer.weights]
    given = [tuple(np.shape(weight)) for weight in weights]
    if shapes != given:
        raise UserError(f"layer {layer.name} holds {shapes}, but Keras' {keras_name} {given}")
    layer.set_weights(weights)
