import json

import cv2
import keras
import numpy as np

import predict


def colour_model():
    """Class 0 for red images, 1 for green, 2 for blue: softmax of the mean colour."""
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="scores")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("scores").set_weights(
        [np.eye(3, dtype="float32") * 0.1, np.zeros(3, "float32")]
    )
    return model


def test_predict_prints_the_top_classes_with_names_and_skips_bad_files(tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    colour_model().save(model_path)
    (tmp_path / "model.json").write_text(
        json.dumps({"epoch": 1, "batch": 0, "class_names": ["red", "green", "blue"]})
    )
    folder = tmp_path / "images"
    folder.mkdir()
    # OpenCV writes BGR: (0, 0, 255) is red on disk.
    cv2.imwrite(str(folder / "red.png"), np.full((20, 30, 3), (0, 0, 255), np.uint8))
    cv2.imwrite(str(folder / "blue.png"), np.full((12, 12, 3), (255, 0, 0), np.uint8))
    (folder / "broken.jpg").write_bytes(b"not an image")
    assert predict.main([str(folder), "--model", str(model_path), "--top", "2"]) == 0
    captured = capsys.readouterr()
    lines = dict(line.split(": ", 1) for line in captured.out.strip().splitlines())
    assert lines[str(folder / "red.png")].startswith("red 100.0%") or lines[
        str(folder / "red.png")
    ].startswith("red ")
    assert lines[str(folder / "blue.png")].split(",")[0].startswith("blue")
    assert len(lines[str(folder / "blue.png")].split(",")) == 2
    assert f"skipped {folder / 'broken.jpg'}" in captured.err


def test_a_missing_target_is_a_one_line_error(tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    colour_model().save(model_path)
    assert predict.main([str(tmp_path / "nothing"), "--model", str(model_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_images_are_seen_as_in_evaluation_stored_size_then_the_model_crop():
    from pipeline.datasets.images import center_crop, resize_and_center_crop
    from pipeline.evaluation.prediction import _view

    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    expected = center_crop(resize_and_center_crop(image, 16), 12, 12)
    np.testing.assert_array_equal(_view(image, 12, 16), expected)
    np.testing.assert_array_equal(_view(image, 12, None), resize_and_center_crop(image, 12))


def test_top_outside_the_classes_and_odd_file_names_stay_one_line(tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    colour_model().save(model_path)
    image = tmp_path / "two\nlines.png"
    cv2.imwrite(str(tmp_path / "plain.png"), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    (tmp_path / "plain.png").rename(image)
    for top, message in (
        (0, "at least 1, got 0"),
        (-1, "at least 1"),
        (4, "at most the model's 3"),
    ):
        assert predict.main([str(image), "--model", str(model_path), "--top", str(top)]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: --top must be") and message in error and "\n" not in error
    assert predict.main([str(image), "--model", str(model_path), "--top", "1"]) == 0
    output = capsys.readouterr().out.strip().splitlines()
    # No state beside the model: classes by their ids.
    assert len(output) == 1 and output[0].startswith(f"{tmp_path}/two\\nlines.png: 0 ")
    # A non-zip file named .keras is one line, not Keras' "File not found".
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip")
    assert predict.main([str(image), "--model", str(fake)]) == 2
    assert "is not a .keras file (not a zip archive)" in capsys.readouterr().err
