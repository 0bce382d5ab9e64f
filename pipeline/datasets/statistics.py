"""Per-channel statistics of a split, accumulated batch by batch in float64."""

import numpy as np


class ChannelStatistics:
    """Running per-channel mean and standard deviation of uint8 RGB images (0-255 scale)."""

    def __init__(self, num_channels: int = 3) -> None:
        self.num_values = 0
        self.sums = np.zeros(num_channels, dtype=np.float64)
        self.squared_sums = np.zeros(num_channels, dtype=np.float64)

    def update(self, images: np.ndarray) -> None:
        """Add a batch of images (n, H, W, C)."""
        pixels = images.reshape(-1, images.shape[-1]).astype(np.float64)
        self.num_values += pixels.shape[0]
        self.sums += pixels.sum(axis=0)
        self.squared_sums += np.square(pixels).sum(axis=0)

    @property
    def mean(self) -> np.ndarray:
        return self.sums / max(self.num_values, 1)

    @property
    def std(self) -> np.ndarray:
        variance = self.squared_sums / max(self.num_values, 1) - np.square(self.mean)
        return np.sqrt(np.maximum(variance, 0.0))
