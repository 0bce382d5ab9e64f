"""Test-time views of a batch: centre crop, the 10 crops of AlexNet/ResNet, and rescaling.

All batched: one array operation per crop position, one OpenCV resize per
image per scale; no per-image Python work on the crops themselves.
"""

import cv2
import numpy as np

NUM_TEN_CROPS = 10


def center_crops(images: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window of each image (n, H, W, 3)."""
    height, width = images.shape[1:3]
    top, left = (height - size) // 2, (width - size) // 2
    return images[:, top : top + size, left : left + size]


def ten_crops(images: np.ndarray, size: int) -> np.ndarray:
    """(10, n, size, size, 3): the four corners and the centre, then each mirrored."""
    height, width = images.shape[1:3]
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size)]
    windows = [images[:, top : top + size, left : left + size] for top, left in corners]
    windows.append(center_crops(images, size))
    mirrored = [window[:, :, ::-1] for window in windows]
    return np.stack(windows + mirrored)


def resize_shorter_sides(images: np.ndarray, shorter_side: int) -> np.ndarray:
    """Each image (all of one size) scaled so that its shorter side is `shorter_side`."""
    height, width = images.shape[1:3]
    scale = shorter_side / min(height, width)
    new_size = (max(shorter_side, round(width * scale)), max(shorter_side, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.stack([cv2.resize(image, new_size, interpolation=interpolation) for image in images])
