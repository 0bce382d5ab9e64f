"""scikit-learn's handwritten digits (1797 8x8 grey images, 10 classes) as 32x32 RGB splits.

Real data that ships with a package, so the demo and the tests run without a
download. The 8x8 images (values 0-16) are scaled to 0-255, upscaled to 32x32
(the CIFAR input size the CIFAR ResNets expect) and copied into R, G and B.
"""

import cv2
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from pipeline.datasets.builder import write_in_memory_dataset
from pipeline.errors import UserError

SOURCE = "sklearn.datasets.load_digits"
CLASS_NAMES = [str(digit) for digit in range(10)]
# load_digits pixel values run from 0 to 16.
DIGITS_MAX_VALUE = 16.0


def load_digits_rgb(image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as uint8 RGB images (N, size, size, 3) and their labels (N,)."""
    digits = load_digits()
    grey = np.rint(digits.images * (255.0 / DIGITS_MAX_VALUE)).astype(np.uint8)
    resized = np.stack(
        [
            cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
            for image in grey
        ]
    )
    rgb = np.repeat(resized[..., np.newaxis], 3, axis=-1)
    return rgb, digits.target.astype(np.int32)


def split_stratified(images, labels, *, val_fraction, test_fraction, seed):
    """Split into train/val/test, each with the class proportions of the whole.

    scikit-learn's stratified split (rather than the file builders' per-class
    carving) keeps the demo's published split: 1257 / 180 / 360.
    """
    if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1):
        raise UserError(
            f"digits needs val and test fractions above 0 that sum below 1, got "
            f"{val_fraction} and {test_fraction}"
        )
    train_images, test_images, train_labels, test_labels = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    # The validation fraction is of the whole data set, not of what is left.
    val_share = val_fraction / (1.0 - test_fraction)
    train_images, val_images, train_labels, val_labels = train_test_split(
        train_images, train_labels, test_size=val_share, stratify=train_labels, random_state=seed
    )
    return {
        "train": (train_images, train_labels),
        "val": (val_images, val_labels),
        "test": (test_images, test_labels),
    }


def build(
    output_dir,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: int = 32,
    overwrite: bool = False,
) -> dict:
    """Build the digits data set into `output_dir`; returns the build summary."""
    images, labels = load_digits_rgb(image_size)
    splits = split_stratified(
        images, labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    return write_in_memory_dataset(
        output_dir, splits, class_names=CLASS_NAMES, source=SOURCE, overwrite=overwrite
    )
