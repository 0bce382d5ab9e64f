"""The augmentation operations on batches of uint8 RGB images (n, H, W, 3).

Each augmentation is a callable object, `augmentation(images, rng) -> images`,
that draws the random parameters of the whole batch at once from `rng` (so a
batch's augmentation depends only on the generator that made `rng`, which the
loader derives from the seed, the epoch and the batch's position). Pixel work
is vectorised where NumPy allows and one OpenCV call per image where it does
not (warps, resizes, equalisation): those are microseconds each.

augment.py builds an Augmenter from these, named in the config.
"""

import cv2
import numpy as np

from pipeline.datasets.images import resize_shorter_side
from pipeline.errors import UserError

FILL_MODES = {
    "nearest": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
    "constant": cv2.BORDER_CONSTANT,
}


class PadCrop:
    """Zero-pad by `pad` pixels on each side, then crop back to the input size at random.

    The CIFAR recipe of the papers: pad 4, random 32x32 crop.
    """

    def __init__(self, pad: int = 4) -> None:
        _check(pad >= 1, f"pad_crop: pad must be >= 1, got {pad}")
        self.pad = pad

    def __call__(self, images, rng):
        count, height, width = images.shape[:3]
        pad = self.pad
        padded = np.zeros((count, height + 2 * pad, width + 2 * pad, 3), np.uint8)
        padded[:, pad : pad + height, pad : pad + width] = images
        # Window offsets in the padded image: offset pad is the unshifted image.
        tops = rng.integers(0, 2 * pad + 1, count).tolist()
        lefts = rng.integers(0, 2 * pad + 1, count).tolist()
        output = np.empty_like(images)
        for index, (top, left) in enumerate(zip(tops, lefts, strict=True)):
            output[index] = padded[index, top : top + height, left : left + width]
        return output


class RandomCrop:
    """A random `size` x `size` window of each image (e.g. 224 from 256, 56 from 64)."""

    def __init__(self, size: int) -> None:
        _check(size >= 1, f"random_crop: size must be >= 1, got {size}")
        self.size = size

    def __call__(self, images, rng):
        count, height, width = images.shape[:3]
        _check(
            height >= self.size and width >= self.size,
            f"random_crop: size {self.size} is larger than the images ({height}x{width})",
        )
        tops = rng.integers(0, height - self.size + 1, count).tolist()
        lefts = rng.integers(0, width - self.size + 1, count).tolist()
        return np.stack(
            [
                images[index, top : top + self.size, left : left + self.size]
                for index, (top, left) in enumerate(zip(tops, lefts, strict=True))
            ]
        )


class CenterCrop:
    """The central `size` x `size` window (the evaluation view of a random crop)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, images, rng=None):
        height, width = images.shape[1:3]
        top, left = (height - self.size) // 2, (width - self.size) // 2
        return images[:, top : top + self.size, left : left + self.size]


class HorizontalFlip:
    """Mirror left-right with probability `probability`."""

    def __init__(self, probability: float = 0.5) -> None:
        _check(0 <= probability <= 1, f"flip: probability must be in [0, 1], got {probability}")
        self.probability = probability

    def __call__(self, images, rng):
        flipped = np.flatnonzero(rng.random(len(images)) < self.probability).tolist()
        output = images.copy()
        for index in flipped:
            # OpenCV's flip is several times faster than NumPy's reversed-stride copy
            # of 3-byte pixels.
            cv2.flip(images[index], 1, dst=output[index])
        return output


class RandomAffine:
    """Random rotation, zoom, shift and shear in one warp per image.

    The ranges follow Keras' ImageDataGenerator: `rotation` and `shear` in
    degrees (uniform in +-range), `zoom` as a fraction (scale in 1 +- zoom),
    `shift` as a fraction of the size; `fill` says what comes in from outside.
    """

    def __init__(self, rotation=0.0, zoom=0.0, shift=0.0, shear=0.0, fill="nearest") -> None:
        _check(
            fill in FILL_MODES, f"affine: fill must be one of {sorted(FILL_MODES)}, got {fill!r}"
        )
        self.rotation, self.zoom, self.shift, self.shear = rotation, zoom, shift, shear
        self.border = FILL_MODES[fill]

    def matrices(self, count, height, width, rng) -> np.ndarray:
        """The (count, 2, 3) affine matrices of a batch, about each image's centre."""
        angle = np.radians(rng.uniform(-self.rotation, self.rotation, count))
        shear = np.radians(rng.uniform(-self.shear, self.shear, count))
        scale = rng.uniform(1 - self.zoom, 1 + self.zoom, (count, 2))
        shift = rng.uniform(-self.shift, self.shift, (count, 2)) * (width, height)
        cos, sin = np.cos(angle), np.sin(angle)
        # Rotation @ shear @ scale, as 2x2 blocks for the whole batch.
        linear = np.empty((count, 2, 2))
        linear[:, 0, 0] = cos * scale[:, 0]
        linear[:, 0, 1] = (-sin + cos * np.tan(shear)) * scale[:, 1]
        linear[:, 1, 0] = sin * scale[:, 0]
        linear[:, 1, 1] = (cos + sin * np.tan(shear)) * scale[:, 1]
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        offset = centre - linear @ centre + shift
        return np.concatenate([linear, offset[:, :, None]], axis=2)

    def __call__(self, images, rng):
        count, height, width = images.shape[:3]
        matrices = self.matrices(count, height, width, rng)
        output = np.empty_like(images)
        for index in range(count):
            cv2.warpAffine(
                images[index],
                matrices[index],
                (width, height),
                dst=output[index],
                flags=cv2.INTER_LINEAR,
                borderMode=self.border,
            )
        return output


class BrightnessContrast:
    """Brightness (added, fraction of 255) and contrast (scaled about the image mean)."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2) -> None:
        self.brightness, self.contrast = brightness, contrast

    def __call__(self, images, rng):
        count = len(images)
        offset = rng.uniform(-self.brightness, self.brightness, count) * 255.0
        factor = rng.uniform(1 - self.contrast, 1 + self.contrast, count)
        pixels = images.astype(np.float32)
        means = pixels.mean(axis=(1, 2, 3), keepdims=True)
        pixels = (pixels - means) * factor[:, None, None, None] + means
        pixels += offset[:, None, None, None]
        return to_uint8(pixels)


class Equalize:
    """Histogram equalisation of each channel, with probability `probability`."""

    def __init__(self, probability: float = 1.0) -> None:
        self.probability = probability

    def __call__(self, images, rng):
        output = images.copy()
        for index in np.flatnonzero(rng.random(len(images)) < self.probability):
            for channel in range(3):
                output[index, :, :, channel] = cv2.equalizeHist(
                    np.ascontiguousarray(images[index, :, :, channel])
                )
        return output


class PCALighting:
    """AlexNet's colour augmentation: shift every pixel along the data set's principal colours.

    Each image gets eigenvectors @ (alpha * sqrt(eigenvalues)), alpha ~ N(0, std),
    using the train split's RGB covariance stored in the HDF5 file; sqrt puts
    the shift on the scale of the data's spread along each principal axis.
    """

    def __init__(self, covariance, std: float = 0.1) -> None:
        _check(covariance is not None, "pca_lighting needs the split's 'covariance'; rebuild it")
        eigenvalues, self.eigenvectors = np.linalg.eigh(np.asarray(covariance, dtype=np.float64))
        self.spread = np.sqrt(np.maximum(eigenvalues, 0.0))
        self.std = std

    def __call__(self, images, rng):
        alpha = rng.normal(0.0, self.std, (len(images), 3))
        shift = (alpha * self.spread) @ self.eigenvectors.T  # (n, 3) RGB offsets
        pixels = images.astype(np.float32) + shift[:, None, None, :].astype(np.float32)
        return to_uint8(pixels)


class ScaleCrop:
    """Scale augmentation: shorter side uniform in [min_side, max_side], then a random crop.

    The papers' ImageNet recipe is min_side 256, max_side 480, size 224. Works
    on a list of images of any sizes (JPEG-encoded splits) or on a batch.
    """

    def __init__(self, min_side: int = 256, max_side: int = 480, size: int = 224) -> None:
        _check(
            size <= min_side <= max_side,
            f"scale: need size <= min_side <= max_side, got {size}, {min_side}, {max_side}",
        )
        self.min_side, self.max_side, self.size = min_side, max_side, size

    def __call__(self, images, rng):
        sides = rng.integers(self.min_side, self.max_side + 1, len(images)).tolist()
        positions = rng.random((len(images), 2)).tolist()
        output = np.empty((len(images), self.size, self.size, 3), np.uint8)
        for index, (image, side, (down, across)) in enumerate(
            zip(images, sides, positions, strict=True)
        ):
            resized = resize_shorter_side(image, side)
            top = int(down * (resized.shape[0] - self.size + 1))
            left = int(across * (resized.shape[1] - self.size + 1))
            output[index] = resized[top : top + self.size, left : left + self.size]
        return output


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Round to the nearest value and clip to 0-255: truncation would darken every image."""
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
