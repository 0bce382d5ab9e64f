"""Test-time views of a batch: centre crop, the 10 crops of AlexNet/ResNet, and rescaling.

All batched: one array operation per crop position, one OpenCV resize per
image per scale; no per-image Python work on the crops themselves.
"""

import cv2
import numpy as np

from pipeline.datasets.images import resize_shorter_side

NUM_TEN_CROPS = 10


def ten_crops(images: np.ndarray, size: int) -> np.ndarray:
    """(10, n, size, size, 3): the four corners and the centre, then each mirrored.

    The mirrored crops are cut from the mirrored batch (the mirror of the crop at
    column c is the crop at column W - size - c of the mirror): one OpenCV flip
    per image instead of ten reversed-stride NumPy copies of 3-byte pixels.
    """
    height, width = images.shape[1:3]
    positions = [
        (0, 0),
        (0, width - size),
        (height - size, 0),
        (height - size, width - size),
        ((height - size) // 2, (width - size) // 2),
    ]
    mirrored_batch = np.stack([cv2.flip(image, 1) for image in images])
    crops = np.empty((NUM_TEN_CROPS, len(images), size, size, 3), images.dtype)
    for index, (top, left) in enumerate(positions):
        crops[index] = images[:, top : top + size, left : left + size]
        mirrored_left = width - size - left
        crops[index + 5] = mirrored_batch[:, top : top + size, mirrored_left : mirrored_left + size]
    return crops


def resize_shorter_sides(images: np.ndarray, shorter_side: int) -> np.ndarray:
    """Each image (all of one size) scaled so that its shorter side is `shorter_side`."""
    return np.stack([resize_shorter_side(image, shorter_side) for image in images])
