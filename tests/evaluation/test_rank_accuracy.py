import json

import keras
import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.evaluation.rank_accuracy import evaluate, rank_k_accuracy, rank_k_hits, write_report
from pipeline.evaluation.target import newest_checkpoint
from tests.conftest import write_split_file

NUM_CLASSES = 10


def test_rank_k_on_known_scores():
    probabilities = np.array(
        [
            [0.1, 0.7, 0.2],  # label 1: rank 0
            [0.5, 0.3, 0.2],  # label 2: rank 2
            [0.3, 0.3, 0.4],  # label 0: tied with class 1, one class strictly higher
        ]
    )
    labels = np.array([1, 2, 0])
    np.testing.assert_array_equal(rank_k_hits(probabilities, labels, 1), [True, False, False])
    np.testing.assert_array_equal(rank_k_hits(probabilities, labels, 2), [True, False, True])
    assert rank_k_accuracy(probabilities, labels, 5) == 1.0


def planted_model():
    """A model whose scores are -(v - c)^2 for the value v planted in channel 0.

    It predicts class v, then v-1 and v+1 (tied), then v-2 and v+2: so a
    sample whose label is v + offset is a rank-1 hit for offset 0 and a rank-5
    hit for |offset| <= 2, and a rank-5 miss for |offset| >= 3 when v lies in
    3..6.
    """
    inputs = keras.Input((4, 4, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(NUM_CLASSES, name="scores")
    outputs = keras.layers.Activation("softmax")(dense(pooled))
    model = keras.Model(inputs, outputs)
    classes = np.arange(NUM_CLASSES, dtype="float32")
    kernel = np.zeros((3, NUM_CLASSES), "float32")
    kernel[0] = 2 * classes  # -(v - c)^2 = 2cv - c^2 - v^2, and v^2 is the same for every c
    dense.set_weights([kernel, -np.square(classes)])
    return model


@pytest.fixture
def planted_split(tmp_path):
    """37 samples (no batch size divides it) with known rank-1 and rank-5 outcomes."""
    rng = np.random.default_rng(0)
    planted = rng.integers(3, 7, 37)
    offsets = np.array([0, 1, -2, 3, -4] * 7 + [0, 2])
    labels = planted + offsets
    valid = (labels >= 0) & (labels < NUM_CLASSES)
    planted, labels, offsets = planted[valid], labels[valid], offsets[valid]
    images = np.zeros((len(labels), 4, 4, 3), np.uint8)
    images[..., 0] = planted[:, None, None]
    path = write_split_file(
        tmp_path / "test.h5",
        images,
        labels.astype(np.int32),
        [str(c) for c in range(NUM_CLASSES)],
        split="test",
    )
    return path, offsets


@pytest.mark.parametrize("batch_size", [1, 8, 256])
def test_evaluate_counts_every_sample_with_exact_ranks(tmp_path, planted_split, batch_size):
    split_file, offsets = planted_split
    model_path = tmp_path / "planted.keras"
    planted_model().save(model_path)
    report = evaluate(model_path, split_file, batch_size=batch_size)
    assert report["num_samples"] == len(offsets)
    assert report["rank1_correct"] == int(np.sum(offsets == 0))
    assert report["rank5_correct"] == int(np.sum(np.abs(offsets) <= 2))
    assert report["rank1"] == pytest.approx(np.mean(offsets == 0))
    assert report["rank5"] == pytest.approx(np.mean(np.abs(offsets) <= 2))
    json.loads(write_report(report, tmp_path / "report.json").read_text())  # valid JSON


def test_model_with_another_class_count_is_refused(tmp_path, planted_split):
    split_file, _ = planted_split
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs)
    )
    path = tmp_path / "three.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(UserError, match="predicts 3 classes"):
        evaluate(path, split_file)


def test_newest_checkpoint_is_the_highest_epoch(tmp_path):
    for epoch in (5, 10, 30):
        (tmp_path / f"epoch_{epoch:04d}.keras").write_bytes(b"x")
    assert newest_checkpoint(tmp_path).name == "epoch_0030.keras"
    with pytest.raises(UserError, match="no checkpoint"):
        newest_checkpoint(tmp_path / "empty")


def test_a_damaged_model_file_is_a_user_error(tmp_path, planted_split):
    split_file, _ = planted_split
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="is not a .keras file"):
        evaluate(path, split_file)
    # A zip archive that is no Keras model: Keras' own reason, on one line.
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(UserError, match="cannot load model") as refused:
        evaluate(path, split_file)
    assert "\n" not in str(refused.value)


def test_rank5_is_not_reported_for_five_classes_or_fewer(tmp_path):
    from pipeline.datasets.hdf5_reader import read_split_info
    from pipeline.evaluation.rank_accuracy import build_report, format_report

    path = write_split_file(
        tmp_path / "test.h5", np.zeros((4, 2, 2, 3), np.uint8), np.array([0, 1, 2, 0]),
        ["a", "b", "c"], split="test",
    )  # fmt: skip
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(b"stand-in")
    report = build_report(
        probabilities, np.array([0, 1, 2, 0]), read_split_info(path), model_path, path, "center", ()
    )
    assert report["rank1"] == 0.5 and report["rank5"] is None
    assert all(entry["rank5"] is None for entry in report["per_class"])
    assert "rank-5: not reported (3 classes: every sample is a hit)" in format_report(report)
    from pipeline.evaluation.rank_accuracy import confusion_title

    title = confusion_title(report)
    assert title == f"model.keras on the test split of {tmp_path.name} (center): rank-1 50.00% of 4"
