"""The presets are the papers' networks: parameter counts and depths from their tables."""

import functools

import keras
import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.nn import PRESETS, build_preset, spec_of

# (preset, classes, parameters in millions as the paper prints them, what it counts).
# He et al. 2015 counts every trainable weight, batch normalisation included
# (ResNet-1202: 19.42M); He et al. 2016 counts convolution and dense weights
# (pre-activation ResNet-1001: 10.18M of them, 10.33M with batch normalisation).
PAPER_TABLE = [
    ("resnet20", 10, "0.27", "trainable"),
    ("resnet32", 10, "0.46", "trainable"),
    ("resnet44", 10, "0.66", "trainable"),
    ("resnet56", 10, "0.85", "trainable"),
    ("resnet110", 10, "1.7", "trainable"),
    ("resnet1202", 10, "19.4", "trainable"),
    ("preact_resnet110", 10, "1.7", "kernels"),
    ("preact_resnet164", 10, "1.7", "kernels"),
    ("preact_resnet1001", 10, "10.2", "kernels"),
    ("resnet18", 1000, "11.7", "trainable"),
    ("resnet34", 1000, "21.8", "trainable"),
    ("resnet50", 1000, "25.6", "trainable"),
]
WEIGHTED = (keras.layers.Conv2D, keras.layers.Dense)
CLASSES = {name: classes for name, classes, _, _ in PAPER_TABLE}


@functools.cache
def built(name: str, classes: int):
    """Each preset is built once per test session: the deep ones take seconds."""
    return build_preset(name, classes)


def count(model, what: str) -> int:
    if what == "trainable":
        return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))
    return int(
        sum(
            np.prod(layer.kernel.shape) + (np.prod(layer.bias.shape) if layer.use_bias else 0)
            for layer in model.layers
            if isinstance(layer, WEIGHTED)
        )
    )


def weighted_depth(model) -> int:
    return sum(
        1 for layer in model.layers if isinstance(layer, WEIGHTED) and "shortcut" not in layer.name
    )


@pytest.mark.parametrize("name, classes, printed, what", PAPER_TABLE)
def test_parameter_counts_match_the_papers_at_their_rounding(name, classes, printed, what):
    model = built(name, classes)
    decimals = len(printed.split(".")[1])
    assert f"{count(model, what) / 1e6:.{decimals}f}" == printed


@pytest.mark.parametrize(
    "name", [name for name in PRESETS if name not in ("resnet1202", "preact_resnet1001")]
)
def test_depth_matches_the_name(name):
    model = built(name, CLASSES.get(name, 10))
    expected = int(name.rsplit("resnet", 1)[1])
    assert weighted_depth(model) == spec_of(name).depth == expected


def test_the_reference_cifar_network_called_resnet56_has_83_layers():
    assert spec_of("reference_cifar_preact_resnet83").depth == 83
    # Its regularisation reaches every convolution, not only the stem and head.
    model = built("reference_cifar_preact_resnet83", 10)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(layer.kernel_regularizer is not None for layer in convolutions)
    assert float(convolutions[-1].kernel_regularizer.l2) == pytest.approx(5e-4)


@pytest.mark.parametrize(
    "name, input_shape, stem_output",
    [
        ("resnet20", (32, 32, 3), (32, 32, 16)),
        ("reference_tiny_imagenet_preact_resnet41", (64, 64, 3), (32, 32, 64)),
        ("resnet18", (224, 224, 3), (56, 56, 64)),
    ],
)
def test_stems_give_the_papers_output_sizes(name, input_shape, stem_output):
    model = build_preset(name, 10, input_shape)
    stem_layers = [layer for layer in model.layers if layer.name.startswith("stem")]
    assert tuple(stem_layers[-1].output.shape[1:]) == stem_output
    last_stage = [layer for layer in model.layers if layer.name.startswith("stage")][-1]
    final_side = stem_output[0] // 2 ** (len(spec_of(name).stages) - 1)
    assert tuple(last_stage.output.shape[1:3]) == (final_side, final_side)


def test_option_a_shortcuts_have_no_parameters_and_option_b_projects():
    option_a = built("resnet20", 10)
    assert not [layer for layer in option_a.layers if "shortcut_conv" in layer.name]
    assert len([layer for layer in option_a.layers if "shortcut_pad" in layer.name]) == 2
    option_b = build_preset("resnet20", 10, shortcut="B")
    assert len([layer for layer in option_b.layers if "shortcut_conv" in layer.name]) == 2
    assert count(option_b, "trainable") > count(option_a, "trainable")


def test_zero_padded_shortcut_subsamples_and_pads_with_zeros():
    from pipeline.nn.layers import ZeroPadShortcut

    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    y = np.asarray(ZeroPadShortcut(filters=5, stride=2)(x))
    assert y.shape == (2, 2, 2, 5)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    assert not y[..., 3:].any()


def test_overrides_replace_spec_fields_and_unknown_ones_are_refused():
    model = build_preset("resnet20", 10, l2=0.0, initializer="glorot_uniform")
    convolution = model.get_layer("stem_conv")
    assert convolution.kernel_regularizer is None
    assert isinstance(convolution.kernel_initializer, keras.initializers.GlorotUniform)
    with pytest.raises(UserError, match="unknown"):
        build_preset("resnet20", 10, depth=21)
    with pytest.raises(UserError, match="unknown model preset"):
        build_preset("resnet21", 10)


def test_fully_convolutional_input_takes_several_sizes():
    model = build_preset("resnet20", 10, (None, None, 3))
    for side in (32, 48):
        assert model(np.zeros((1, side, side, 3), "float32")).shape == (1, 10)


def test_every_preset_states_its_source():
    assert all(spec.source for spec in PRESETS.values())


def test_listing_the_presets_loads_no_framework():
    import subprocess
    import sys

    code = (
        "import sys; from pipeline.nn.__main__ import main; main(['list']); "
        "print('frameworks', 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert "resnet110" in completed.stdout and "frameworks False False" in completed.stdout
    assert completed.stderr == ""  # no framework start-up lines either
