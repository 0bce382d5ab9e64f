"""Solid-colour fixture images for the data-set builder tests, and reading back what was built.

The scheme: every fixture image is one solid colour. Red and green give its class, blue its
index within the class (`colour`). So the stored pixels of a built split say which file each
stored row came from (`identify`), whether the row's stored label is right (`identities`), and,
since red and blue differ, that R and B were not swapped on the way. PNGs come back exactly;
JPEGs within `JPEG_TOLERANCE`.

Also here: `one_line_error`, the check that a command line failed with a one-line message.
"""

import cv2
import numpy as np
from PIL import Image

from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import open_split

# Solid-colour JPEGs come back within a few units (twice encoded: a little more).
JPEG_TOLERANCE = 6


def colour(label, index):
    """RGB of image `index` of class `label`."""
    return (40 * label + 20, 200 - 30 * label, 20 + 35 * index)


def solid(rgb, height, width=None):
    """A `height` x `width` (square if `width` is left out) image of the one colour `rgb`."""
    return np.full((height, height if width is None else width, 3), rgb, dtype=np.uint8)


def write_jpeg(path, rgb, size):
    """Write a `size` x `size` image of colour `rgb` as a quality-95 JPEG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = solid(rgb[::-1], size)  # OpenCV writes BGR
    assert cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])


def write_png(path, rgb, size):
    """Write a `size` x `size` image of colour `rgb` as a (lossless) PNG, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), rgb).save(path)  # PIL takes RGB


def read(dataset_dir, split):
    """(images, labels) of a built split."""
    with open_split(split_path(dataset_dir, split)) as handle:
        return handle["images"][()], handle["labels"][()]


def identify(image):
    """(class, index) of a stored solid-colour image, checked against its expected colour."""
    red, green, blue = image.reshape(-1, 3).astype(np.float64).mean(axis=0)
    label = round((red - 20) / 40)
    index = round((blue - 20) / 35)
    np.testing.assert_allclose(
        (red, green, blue),
        colour(label, index),
        atol=JPEG_TOLERANCE,
        err_msg="not a fixture colour",
    )
    return label, index


def identities(images, labels):
    """The (class, index) of each stored image; also checks each stored label matches its pixels."""
    found = [identify(image) for image in images]
    assert [label for label, _ in found] == labels.tolist()
    return found


def one_line_error(capsys):
    """The error a command line printed, checked to be one line starting "error: "."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err
