"""Keras' ImageNet ResNets mapped onto the keras_resnet presets: the same outputs, without a
download (random weights in Keras' model, every one of them changed from its default)."""

from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.nn import keras_weights
from pipeline.nn.keras_weights import (
    IMAGENET_MEAN_RGB,
    copy_keras_weights,
    keras_application,
    preset_for,
)
from pipeline.nn.presets import build_preset


def randomise(model, seed: int) -> None:
    """Non-default values everywhere, so that a weight mapped to the wrong place shows:
    biases, BN means, variances, scales and offsets of moderate size (activations stay
    finite through 150 layers)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = weights
            weights = [
                rng.uniform(0.2, 0.5, gamma.shape),
                rng.normal(0, 0.1, beta.shape),
                rng.normal(0, 0.1, mean.shape),
                rng.uniform(0.5, 1.5, variance.shape),
            ]
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            kernel, bias = weights
            fan_in = np.prod(kernel.shape[:-1])
            # The classifier's kernel larger: logits of a few units, a softmax far from flat.
            spread = np.sqrt((400 if isinstance(layer, keras.layers.Dense) else 1) / fan_in)
            weights = [rng.normal(0, spread, kernel.shape), rng.normal(0, 0.1, bias.shape)]
        layer.set_weights([np.asarray(weight, np.float32) for weight in weights])


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "resnet152"])
def test_mapped_weights_give_keras_outputs(name):
    source = keras_application(name, include_top=True)
    randomise(source, seed=len(name))
    target = build_preset(
        preset_for(name), 1000, (224, 224, 3), mean=IMAGENET_MEAN_RGB, std=(1.0, 1.0, 1.0)
    )
    copy_keras_weights(source, target, include_head=True)
    # RGB images on the 0-255 scale: this project's input. Keras' model takes them
    # through its own preprocessing (BGR, the ImageNet mean subtracted).
    images = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    preprocessed = keras.applications.resnet.preprocess_input(images.copy())
    expected = keras.ops.convert_to_numpy(source(preprocessed, training=False))
    actual = keras.ops.convert_to_numpy(target(images, training=False))
    assert expected.max() > 0.05  # far from flat (0.001): the weights shape the output
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    # The logits too, before the softmax flattens differences.
    source_logits = keras.Model(source.input, source.get_layer("predictions").output)
    target_logits = keras.Model(target.input, target.get_layer("head_dense").output)
    source_logits.get_layer("predictions").activation = keras.activations.linear
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(target_logits(images)),
        keras.ops.convert_to_numpy(source_logits(preprocessed)),
        atol=1e-4,
        rtol=1e-4,
    )


def test_a_network_keras_does_not_map_is_one_line():
    with pytest.raises(UserError, match="keras:resnet50v2 is not a keras.applications ResNet"):
        preset_for("resnet50v2")


def test_a_missing_weights_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    if any(Path("/tmp/.keras/models").glob("resnet101_*")):
        pytest.skip("this machine has Keras' ResNet101 weights in /tmp/.keras")
    with pytest.raises(UserError) as raised:
        keras_weights.weights_file("resnet101")
    message = str(raised.value)
    assert "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message and "\n" not in message


def test_the_weights_file_is_found_where_keras_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    top = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    top.write_bytes(b"")
    assert keras_weights.weights_file("resnet50") == top
    notop = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    notop.write_bytes(b"")
    assert keras_weights.weights_file("resnet50") == notop  # the smaller file first


def test_a_damaged_weights_file_is_one_line(tmp_path):
    damaged = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    damaged.write_bytes(b"not an HDF5 file")
    with pytest.raises(UserError, match="cannot read Keras' weights") as raised:
        keras_application("resnet50", include_top=False, weights_path=damaged)
    assert "\n" not in str(raised.value)
