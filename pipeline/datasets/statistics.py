"""Statistics of a train split, accumulated image by image in float64.

Per-channel mean and standard deviation (RGB, 0-255 scale) normalise the
model's input and are exact over every pixel. The 3x3 RGB covariance gives
the eigenvectors of AlexNet-style PCA colour augmentation; it is estimated
from every 16th pixel of every image, which changes it by far less than any
use of it can tell while making the statistics cheap next to decoding (the
full product sums cost a third of a 64x64 JPEG decode). The per-pixel mean
image is what the papers subtract on CIFAR. All of it is additive, so
workers compute it for their own images and the main process only sums.
"""

import cv2
import numpy as np

# Covariance sample: every COVARIANCE_STRIDE-th pixel of each image (or batch).
COVARIANCE_STRIDE = 16
# Pixels of the covariance sample converted to float64 at a time (24 MiB at most).
PIXELS_PER_STEP = 1 << 20
# Layout of PixelMoments.values: count, 3 sums, 3 sums of squares, then the
# 4x4 sum of outer products of the sampled pixels extended to (r, g, b, 1).
_COUNT, _SUMS, _SQUARES, _SAMPLE = 0, slice(1, 4), slice(4, 7), slice(7, 23)


class PixelMoments:
    """Additive pixel moments of some RGB images, as one float64 vector (cheap to send)."""

    def __init__(self, values=None) -> None:
        self.values = np.zeros(23) if values is None else np.asarray(values, dtype=np.float64)

    @classmethod
    def of(cls, images: np.ndarray) -> "PixelMoments":
        """Moments of an image (H, W, 3) or a batch of images (n, H, W, 3)."""
        # Called once per image on every core: kept to a few array operations.
        pixels = images.reshape(-1, 3)
        count = len(pixels)
        # OpenCV's mean and deviation run in SIMD with exact integer sums inside.
        mean, deviation = cv2.meanStdDev(pixels.reshape(-1, 1, 3))
        squares = (deviation * deviation + mean * mean) * count
        gram = np.zeros((4, 4))
        sample = pixels[::COVARIANCE_STRIDE]
        for start in range(0, len(sample), PIXELS_PER_STEP):
            block = sample[start : start + PIXELS_PER_STEP]
            extended = np.ones((len(block), 4))
            extended[:, :3] = block
            gram += extended.T @ extended
        return cls(np.concatenate(([count], mean.ravel() * count, squares.ravel(), gram.ravel())))

    @property
    def count(self) -> int:
        return int(round(self.values[_COUNT]))

    @property
    def sums(self) -> np.ndarray:
        return self.values[_SUMS]

    @property
    def squares(self) -> np.ndarray:
        return self.values[_SQUARES]

    @property
    def sample_gram(self) -> np.ndarray:
        """The 4x4 sum of outer products of the sampled pixels extended with a 1."""
        return self.values[_SAMPLE].reshape(4, 4)

    def add(self, other: "PixelMoments") -> None:
        self.values += other.values


class ImageStatistics:
    """Running statistics of a split's images; the mean image only while all share one size."""

    def __init__(self) -> None:
        self.moments = PixelMoments()
        self.num_images = 0
        self._image_sum = None
        self._fixed_size = True

    def update(self, images: np.ndarray) -> None:
        """Add a batch of same-sized images (n, H, W, 3)."""
        image_sum = images.sum(axis=0, dtype=np.float64)
        self.add_moments(PixelMoments.of(images), image_sum, num_images=len(images))

    def add_moments(self, moments: PixelMoments, image_sum=None, num_images: int = 1) -> None:
        """Add pixel moments computed elsewhere, with the images' per-pixel sum when known."""
        self.moments.add(moments)
        self.num_images += num_images
        if image_sum is None:
            self._fixed_size = False
        elif self._fixed_size and self._image_sum is None:
            self._image_sum = np.array(image_sum, dtype=np.float64)
        elif self._fixed_size and self._image_sum.shape == image_sum.shape:
            self._image_sum += image_sum
        else:
            self._fixed_size = False
        if not self._fixed_size:
            self._image_sum = None

    @property
    def mean(self) -> np.ndarray:
        return self.moments.sums / max(self.moments.count, 1)

    @property
    def std(self) -> np.ndarray:
        variance = self.moments.squares / max(self.moments.count, 1) - np.square(self.mean)
        return np.sqrt(np.maximum(variance, 0.0))

    @property
    def covariance(self) -> np.ndarray:
        """The 3x3 RGB covariance (population, 0-255 scale) of the pixel sample."""
        gram = self.moments.sample_gram
        count = max(gram[3, 3], 1.0)
        sample_mean = gram[3, :3] / count
        return gram[:3, :3] / count - np.outer(sample_mean, sample_mean)

    @property
    def mean_image(self) -> np.ndarray | None:
        """The per-pixel mean (H, W, 3) as float32, or None when image sizes vary."""
        if self._image_sum is None:
            return None
        return (self._image_sum / self.num_images).astype(np.float32)
