"""Test-time views: 10-crop and multi-scale average scores, batched; per-class figures."""

import json

import keras
import numpy as np
import pytest

import rank_accuracy
from pipeline.datasets.images import center_crop
from pipeline.evaluation.crops import resize_shorter_sides, ten_crops
from pipeline.evaluation.rank_accuracy import evaluate, fully_convolutional, predict_split
from pipeline.evaluation.reports import most_confused_pairs, per_class_figures, plot_confusion
from pipeline.io import HDF5DatasetGenerator, LoaderOptions
from tests.conftest import write_split_file

NUM_CLASSES = 6


def position_images(count, height=8, width=10):
    """R encodes the row, G the column, B the image: a crop says where it came from."""
    images = np.zeros((count, height, width, 3), np.uint8)
    images[..., 0] = np.arange(height)[:, None] * 10
    images[..., 1] = np.arange(width)[None, :] * 10
    images[..., 2] = np.arange(count)[:, None, None]
    return images


def test_ten_crops_are_the_corners_and_centre_then_their_mirrors():
    images = position_images(3)
    crops = ten_crops(images, 6)
    assert crops.shape == (10, 3, 6, 6, 3)
    top_lefts = [(0, 0), (0, 4), (2, 0), (2, 4), (1, 2)]
    for position, (top, left) in enumerate(top_lefts):
        np.testing.assert_array_equal(crops[position], images[:, top : top + 6, left : left + 6])
        np.testing.assert_array_equal(crops[position + 5], crops[position][:, :, ::-1])
    np.testing.assert_array_equal(crops[4], [center_crop(image, 6, 6) for image in images])


def test_resize_keeps_the_aspect_ratio_from_the_shorter_side():
    assert resize_shorter_sides(position_images(2, 8, 10), 16).shape == (2, 16, 20, 3)


def scoring_model(input_shape=(6, 6, 3)):
    """Scores from the mean red and green of the view (a model that differs per crop)."""
    inputs = keras.Input(input_shape)
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="scores")(pooled)
    model = keras.Model(inputs, outputs)
    kernel = np.random.default_rng(0).normal(0, 0.05, (3, NUM_CLASSES)).astype("float32")
    model.get_layer("scores").set_weights([kernel, np.zeros(NUM_CLASSES, "float32")])
    return model


@pytest.fixture
def position_split(tmp_path):
    images = position_images(23)
    labels = (np.arange(23) % NUM_CLASSES).astype(np.int32)
    return write_split_file(tmp_path / "test.h5", images, labels, list("abcdef"), split="test")


def test_ten_crop_averages_the_scores_of_the_ten_views(position_split):
    model = scoring_model()
    generator = HDF5DatasetGenerator(position_split, LoaderOptions(batch_size=5, shuffle=False))
    scores = predict_split(model, generator, mode="ten_crop", crop_size=6)
    images = generator.storage.read(np.arange(23))
    views = ten_crops(images, 6)
    expected = np.mean([np.asarray(model(view)) for view in views], axis=0)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_multi_scale_averages_the_scores_over_scales(position_split):
    model = scoring_model()
    generator = HDF5DatasetGenerator(position_split, LoaderOptions(batch_size=7, shuffle=False))
    scores = predict_split(model, generator, mode="multi_scale", scales=(8, 12))
    images = generator.storage.read(np.arange(23))
    whole = fully_convolutional(model)
    expected = np.mean(
        [np.asarray(whole(resize_shorter_sides(images, scale))) for scale in (8, 12)], axis=0
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_per_class_figures_and_most_confused_pairs():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 1, 1, 0, 0, 2])
    figures = per_class_figures(
        (labels == predictions).astype(float), np.ones(6), labels, ["x", "y", "z", "w"]
    )
    assert [figure["rank1"] for figure in figures[:3]] == [0.5, pytest.approx(1 / 3), 1.0]
    assert figures[3]["samples"] == 0 and figures[3]["rank1"] is None
    pairs = most_confused_pairs(labels, predictions, ["x", "y", "z", "w"])
    assert pairs[0] == {"true": "y", "predicted": "x", "count": 2}
    assert pairs[1] == {"true": "x", "predicted": "y", "count": 1} and len(pairs) == 2


def test_confusion_picture_for_many_classes_shows_the_most_confused_pairs(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 257, 3000)
    predictions = np.where(rng.random(3000) < 0.7, labels, rng.integers(0, 257, 3000))
    path = plot_confusion(
        labels, predictions, [f"class{index}" for index in range(257)], tmp_path / "c.png"
    )
    assert path.stat().st_size > 0


def test_rank_accuracy_writes_the_report_and_picture(tmp_path, position_split, capsys):
    model_path = tmp_path / "model.keras"
    scoring_model(input_shape=(8, 10, 3)).save(model_path)
    report_path = tmp_path / "report.json"
    code = rank_accuracy.main(
        ["--model", str(model_path), "--dataset", str(position_split), "--batch-size", "4",
         "--report", str(report_path), "--per-class"]
    )  # fmt: skip
    assert code == 0
    output = capsys.readouterr().out
    assert "precision" in output and "rank-1:" in output
    report = json.loads(report_path.read_text())
    assert report["num_samples"] == 23 and len(report["per_class"]) == NUM_CLASSES
    assert report["model_fingerprint"]["sha256"] and report["data_fingerprint"]["num_samples"] == 23
    assert (tmp_path / "report_confusion.png").stat().st_size > 0
    same = evaluate(model_path, position_split, batch_size=23)
    assert same["rank1_correct"] == report["rank1_correct"]


def test_ten_crop_needs_images_larger_than_the_model_input(tmp_path, position_split):
    from pipeline.errors import UserError

    model_path = tmp_path / "model.keras"
    scoring_model(input_shape=(12, 12, 3)).save(model_path)
    with pytest.raises(UserError, match="larger than the model input 12x12; .* holds 8x10"):
        evaluate(model_path, position_split, mode="ten_crop")
    # As large as the input (the digits demo): the ten crops would be two views.
    scoring_model(input_shape=(8, 8, 3)).save(model_path)
    with pytest.raises(UserError, match="the image and its mirror: use --mode center"):
        evaluate(model_path, position_split, mode="ten_crop")
    with pytest.raises(UserError, match="--scales"):
        evaluate(model_path, position_split, mode="multi_scale")


def test_centre_mode_crops_stored_images_to_a_smaller_model_input(tmp_path, position_split):
    # Stored 8x10, model 6x6 (like Caltech-256 stored at 256 for a 224 model).
    model_path = tmp_path / "model.keras"
    model = scoring_model()
    model.save(model_path)
    report = evaluate(model_path, position_split, batch_size=8)
    unshuffled = LoaderOptions(batch_size=23, shuffle=False)
    images = HDF5DatasetGenerator(position_split, unshuffled).storage.read(np.arange(23))
    expected = np.asarray(model(images[:, 1:7, 2:8])).argmax(axis=1)
    assert report["num_samples"] == 23
    np.testing.assert_array_equal(report["predictions"], expected)
