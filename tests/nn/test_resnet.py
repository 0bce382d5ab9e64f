import keras
import numpy as np
import pytest

from pipeline.models import load_model
from pipeline.nn import ResNetSpec, build_resnet

TINY = ResNetSpec(block="bottleneck", stages=(1, 2), filters=(8, 8, 16), stem="cifar")


def tiny_resnet(spec=TINY, **options):
    settings = dict(
        num_classes=7, input_shape=(16, 16, 3), mean=(100.0, 110.0, 120.0), std=(50.0, 60.0, 70.0)
    )
    settings.update(options)
    return build_resnet(spec, **settings)


def random_images(count, side=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 3)).astype("float32")


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("preactivation", [True, False])
def test_every_block_kind_gives_a_probability_distribution(block, preactivation):
    spec = ResNetSpec(block=block, stages=(1, 1), filters=(8, 8, 16), preactivation=preactivation)
    probabilities = np.asarray(tiny_resnet(spec)(random_images(3), training=False))
    assert probabilities.shape == (3, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_layers_are_named_by_position_and_later_stages_halve_the_resolution():
    model = tiny_resnet()
    names = {layer.name for layer in model.layers}
    for name in ("normalize", "stem_conv", "stage1_block1_conv1", "stage2_block2_conv3",
                 "stage2_block1_shortcut_conv", "head_pool", "predictions"):  # fmt: skip
        assert name in names
    assert model.get_layer("stage1_block1_add").output.shape[1:3] == (16, 16)
    assert model.get_layer("stage2_block1_add").output.shape[1:3] == (8, 8)
    # Identity shortcut where the shape does not change; the stride on the 3x3.
    assert "stage2_block2_shortcut_conv" not in names
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)
    assert model.get_layer("stage2_block1_conv1").strides == (1, 1)


def test_original_bottleneck_strides_on_its_first_convolution():
    spec = ResNetSpec(block="bottleneck", stages=(1, 1), filters=(8, 8, 16), preactivation=False)
    model = tiny_resnet(spec)
    assert model.get_layer("stage2_block1_conv1").strides == (2, 2)
    assert "stage2_block1_shortcut_bn" in {layer.name for layer in model.layers}


def test_normalisation_holds_the_dataset_statistics():
    layer = tiny_resnet().get_layer("normalize")
    images = np.broadcast_to(np.array([150.0, 110.0, 50.0], "float32"), (1, 2, 2, 3))
    np.testing.assert_allclose(np.asarray(layer(images))[0, 0, 0], [1.0, 0.0, -1.0], atol=1e-5)


def test_mean_image_is_subtracted_and_saved_with_the_model(tmp_path):
    mean_image = np.random.default_rng(1).uniform(0, 255, (16, 16, 3)).astype("float32")
    model = tiny_resnet(mean_image=mean_image, std=None)
    subtract = model.get_layer("subtract_mean_image")
    images = random_images(2)
    np.testing.assert_allclose(np.asarray(subtract(images)), images - mean_image, rtol=1e-6)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = load_model(path)
    np.testing.assert_allclose(
        restored.get_layer("subtract_mean_image").mean_image.numpy(), mean_image
    )


def test_l2_penalty_on_every_convolution_and_dense_kernel():
    model = tiny_resnet(ResNetSpec(block="basic", stages=(1,), filters=(8, 8), l2=1e-3))
    weighted = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
    ]
    assert weighted and all(layer.kernel_regularizer is not None for layer in weighted)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_saved_model_gives_identical_predictions(tmp_path, shortcut):
    spec = ResNetSpec(
        block="basic", stages=(1, 1), filters=(8, 8, 16), shortcut=shortcut, preactivation=False
    )
    model = tiny_resnet(spec)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = load_model(path)
    images = random_images(4, seed=1)
    np.testing.assert_allclose(
        restored.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6
    )


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_softmax_output_stays_float32_under_mixed_precision(mixed_precision):
    model = tiny_resnet()
    assert model.get_layer("stem_conv").compute_dtype == "float16"
    output = model(np.zeros((1, 16, 16, 3), "float32"))
    assert keras.backend.standardize_dtype(output.dtype) == "float32"


def test_a_few_steps_reduce_the_loss_on_a_tiny_batch():
    keras.utils.set_random_seed(0)
    model = tiny_resnet()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (16, 16, 16, 3)).astype(np.uint8)
    labels = rng.integers(0, 7, 16)
    before = model.evaluate(images, labels, verbose=0)
    model.fit(images, labels, epochs=15, batch_size=16, verbose=0)
    assert model.evaluate(images, labels, verbose=0) < before


def test_spec_refuses_inconsistent_fields():
    from pipeline.errors import UserError

    with pytest.raises(UserError, match="filters needs 3 values"):
        ResNetSpec(block="basic", stages=(1, 1), filters=(8, 8))
    with pytest.raises(UserError, match="block must be one of"):
        ResNetSpec(block="dense", stages=(1,), filters=(8, 8))
    with pytest.raises(UserError, match="divisible by 4"):
        ResNetSpec(block="bottleneck", stages=(1,), filters=(8, 10))
