import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from pipeline.datasets import digits
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import open_split, read_split_info
from pipeline.errors import UserError


def read(dataset_dir, split):
    with open_split(split_path(dataset_dir, split)) as handle:
        return handle["images"][()], handle["labels"][()]


def test_splits_partition_all_1797_digits_stratified(digits_dir):
    sizes = {
        split: read_split_info(split_path(digits_dir, split)).num_samples
        for split in ("train", "val", "test")
    }
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    all_counts = np.bincount(load_digits().target, minlength=10) / 1797
    for split in ("train", "val", "test"):
        _, labels = read(digits_dir, split)
        # Stratified: every class in the same proportion as in the whole set.
        np.testing.assert_allclose(
            np.bincount(labels, minlength=10) / len(labels), all_counts, atol=0.01
        )


def test_images_are_the_digits_upscaled_to_32x32_rgb_with_their_own_labels(digits_dir):
    images, labels = read(digits_dir, "test")
    assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8
    # Grey digits: the three channels are equal.
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    source_images, source_labels = digits.load_digits_rgb(32)
    # Each test image is one of the source images, and it keeps that image's label.
    flat_source = source_images.reshape(len(source_images), -1)
    for image, label in zip(images[:20], labels[:20], strict=True):
        matches = np.flatnonzero((flat_source == image.reshape(-1)).all(axis=1))
        assert len(matches) >= 1
        assert label in source_labels[matches]


def test_upscaling_keeps_the_digit_where_it_was():
    images, _ = digits.load_digits_rgb(32)
    source = load_digits().images
    # A bright 8x8 pixel is bright in the middle of its 4x4 block of the 32x32 image.
    index, row, col = np.argwhere(source == 16)[0]
    assert images[index, row * 4 + 2, col * 4 + 2, 0] >= 200


def test_statistics_come_from_train_only_and_are_in_every_split(digits_dir):
    train_images, _ = read(digits_dir, "train")
    expected_mean = train_images.reshape(-1, 3).astype(np.float64).mean(axis=0)
    expected_std = train_images.reshape(-1, 3).astype(np.float64).std(axis=0)
    for split in ("train", "val", "test"):
        info = read_split_info(split_path(digits_dir, split))
        np.testing.assert_allclose(info.mean, expected_mean, rtol=1e-9)
        np.testing.assert_allclose(info.std, expected_std, rtol=1e-9)
        assert info.class_names == tuple(str(d) for d in range(10))
    mean_json = json.loads((digits_dir / "mean.json").read_text())
    np.testing.assert_allclose([mean_json[c] for c in "RGB"], expected_mean)


def test_same_seed_gives_identical_splits_and_another_seed_does_not(tmp_path, digits_dir):
    digits.build(tmp_path / "same", seed=0)
    digits.build(tmp_path / "other", seed=1)
    same_images, same_labels = read(tmp_path / "same", "train")
    images, labels = read(digits_dir, "train")
    np.testing.assert_array_equal(same_images, images)
    np.testing.assert_array_equal(same_labels, labels)
    other_images, _ = read(tmp_path / "other", "train")
    assert not np.array_equal(other_images, images)


def test_existing_output_is_refused_without_overwrite(tmp_path):
    digits.build(tmp_path)
    with pytest.raises(UserError, match="--overwrite"):
        digits.build(tmp_path)
    digits.build(tmp_path, overwrite=True)


@pytest.mark.parametrize("val, test", [(0.0, 0.2), (0.5, 0.5), (0.1, 0.0)])
def test_bad_split_fractions_are_user_errors(tmp_path, val, test):
    with pytest.raises(UserError, match="fractions"):
        digits.build(tmp_path, val_fraction=val, test_fraction=test)
