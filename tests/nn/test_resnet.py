import keras
import numpy as np
import pytest

from pipeline.nn import build_resnet


def tiny_resnet(**overrides):
    settings = dict(
        input_shape=(16, 16, 3),
        num_classes=7,
        mean=(100.0, 110.0, 120.0),
        std=(50.0, 60.0, 70.0),
        stages=(1, 2),
        filters=(8, 8, 16),
    )
    settings.update(overrides)
    return build_resnet(**settings)


def test_output_is_a_probability_distribution_per_image():
    model = tiny_resnet()
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    probabilities = np.asarray(model(images.astype("float32"), training=False))
    assert probabilities.shape == (3, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_layers_are_named_by_position_and_later_stages_halve_the_resolution():
    model = tiny_resnet()
    names = {layer.name for layer in model.layers}
    for name in (
        "normalize",
        "stem_conv",
        "stage1_block1_conv1",
        "stage2_block2_conv3",
        "stage2_block1_shortcut_conv",
        "head_pool",
        "predictions",
    ):
        assert name in names
    assert model.get_layer("stage1_block1_add").output.shape[1:3] == (16, 16)
    assert model.get_layer("stage2_block1_add").output.shape[1:3] == (8, 8)
    # Identity shortcut when the shape does not change.
    assert "stage2_block2_shortcut_conv" not in names


def test_normalisation_holds_the_dataset_statistics():
    layer = tiny_resnet().get_layer("normalize")
    images = np.broadcast_to(np.array([150.0, 110.0, 50.0], "float32"), (1, 2, 2, 3))
    normalised = np.asarray(layer(images))
    np.testing.assert_allclose(normalised[0, 0, 0], [1.0, 0.0, -1.0], atol=1e-5)


def test_l2_penalty_on_every_convolution_and_dense_kernel():
    model = tiny_resnet(l2=1e-3)
    weighted = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
    ]
    assert weighted and all(layer.kernel_regularizer is not None for layer in weighted)


def test_saved_model_gives_identical_predictions(tmp_path):
    model = tiny_resnet()
    images = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
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
