"""Shared fixtures: small HDF5 splits written in tmp_path, and the digits data set."""

import os

# Quiet TensorFlow before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pipeline.datasets.hdf5_writer import SplitWriter  # noqa: E402


def write_split_file(
    path, images, labels, class_names, *, mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0), split="train"
):
    """Write a complete split file with the given contents; returns its path."""
    with SplitWriter(
        path, image_shape=images.shape[1:], class_names=class_names, split=split, source="test"
    ) as writer:
        writer.add(images, labels)
        writer.finish(mean, std)
    return path


def numbered_images(num_samples, size=4):
    """Images whose every pixel holds the sample's index (mod 256), so a batch names its rows."""
    values = (np.arange(num_samples) % 256).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (num_samples, size, size, 3)).copy()


@pytest.fixture
def numbered_split(tmp_path):
    """A train split of 37 samples (a prime: no batch size divides it) numbered 0..36."""
    images = numbered_images(37)
    labels = (np.arange(37) % 3).astype(np.int32)
    return write_split_file(tmp_path / "train.h5", images, labels, ["a", "b", "c"])


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """The digits data set built once per test session."""
    from pipeline.datasets import digits

    output = tmp_path_factory.mktemp("digits")
    digits.build(output)
    return output
