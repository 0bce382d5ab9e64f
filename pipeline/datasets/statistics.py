"""Statistics of a train split, accumulated image by image in float64.

Per-channel mean and standard deviation (RGB, 0-255 scale) normalise the
model's input; the 3x3 RGB covariance gives the eigenvectors of AlexNet-style
PCA colour augmentation; the per-pixel mean image is what the papers subtract
on CIFAR. Pixel moments are additive, so workers can compute them for their
own images and the main process only sums them.
"""

import numpy as np

# Pixels converted to float64 at a time: bounds the temporary memory (24 MiB).
PIXELS_PER_STEP = 1 << 20


class PixelMoments:
    """Count, sums and sums of products of RGB pixel values, in one 4x4 matrix.

    With each pixel extended to (r, g, b, 1), the matrix is the sum of the
    outer products of those vectors: its top-left 3x3 block holds the sums of
    products, its last row the sums, its corner the count. One matrix product
    computes all of it (three times faster than separate sums), and the
    values stay exact integers in float64 far beyond ImageNet's pixel count.
    """

    def __init__(self, matrix: np.ndarray | None = None) -> None:
        self.matrix = np.zeros((4, 4)) if matrix is None else matrix

    @classmethod
    def of(cls, images: np.ndarray) -> "PixelMoments":
        """Moments of an image (H, W, 3) or a batch of images (n, H, W, 3)."""
        pixels = images.reshape(-1, 3)
        matrix = np.zeros((4, 4))
        for start in range(0, len(pixels), PIXELS_PER_STEP):
            block = pixels[start : start + PIXELS_PER_STEP]
            extended = np.ones((len(block), 4))
            extended[:, :3] = block
            matrix += extended.T @ extended
        return cls(matrix)

    @property
    def count(self) -> int:
        return int(self.matrix[3, 3])

    @property
    def sums(self) -> np.ndarray:
        return self.matrix[3, :3]

    @property
    def products(self) -> np.ndarray:
        return self.matrix[:3, :3]

    def add(self, other: "PixelMoments") -> None:
        self.matrix += other.matrix

    def __reduce__(self):
        # Sent back from every worker for every image: pickle just the matrix.
        return (PixelMoments, (self.matrix,))


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
    def covariance(self) -> np.ndarray:
        """The 3x3 RGB covariance (population, 0-255 scale)."""
        second_moment = self.moments.products / max(self.moments.count, 1)
        return second_moment - np.outer(self.mean, self.mean)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.covariance), 0.0))

    @property
    def mean_image(self) -> np.ndarray | None:
        """The per-pixel mean (H, W, 3) as float32, or None when image sizes vary."""
        if self._image_sum is None:
            return None
        return (self._image_sum / self.num_images).astype(np.float32)
