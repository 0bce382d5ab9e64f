import numpy as np

from pipeline.datasets.statistics import (
    COVARIANCE_STRIDE,
    PIXELS_PER_STEP,
    ImageStatistics,
    PixelMoments,
)


def random_images(count, size=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_mean_std_covariance_and_mean_image_match_numpy():
    images = random_images(10)
    statistics = ImageStatistics()
    statistics.update(images[:3])
    statistics.update(images[3:])
    pixels = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(statistics.mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(statistics.std, pixels.std(axis=0), rtol=1e-9)
    # The covariance is estimated from every 16th pixel of each batch it was given.
    sample = np.concatenate(
        [batch.reshape(-1, 3)[::COVARIANCE_STRIDE] for batch in (images[:3], images[3:])]
    ).astype(np.float64)
    np.testing.assert_allclose(statistics.covariance, np.cov(sample.T, bias=True), rtol=1e-9)
    np.testing.assert_allclose(statistics.mean_image, images.mean(axis=0), rtol=1e-6)
    assert statistics.mean_image.dtype == np.float32


def test_moments_computed_in_pieces_add_up_to_the_whole():
    images = random_images(4, size=8)  # 64 pixels: the same covariance sample either way
    whole = PixelMoments.of(images)
    parts = PixelMoments()
    for image in images:
        parts.add(PixelMoments.of(image))
    assert parts.count == whole.count == 4 * 64
    np.testing.assert_allclose(parts.values, whole.values, rtol=1e-12)


def test_covariance_sample_is_close_to_the_full_covariance_on_correlated_pixels():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 200, (50, 32, 32, 1))
    images = np.clip(base + rng.integers(0, 56, (50, 32, 32, 3)), 0, 255).astype(np.uint8)
    statistics = ImageStatistics()
    statistics.update(images)
    full = np.cov(images.reshape(-1, 3).astype(np.float64).T, bias=True)
    np.testing.assert_allclose(statistics.covariance, full, rtol=0.05)
    assert np.all(np.linalg.eigvalsh(statistics.covariance) > 0)


def test_large_inputs_are_processed_in_bounded_steps():
    images = np.full((1, PIXELS_PER_STEP + 10, 1, 3), 255, np.uint8)
    moments = PixelMoments.of(images)
    assert moments.count == PIXELS_PER_STEP + 10
    np.testing.assert_allclose(moments.sums, 255.0 * moments.count)
    np.testing.assert_allclose(moments.squares, 255.0**2 * moments.count)


def test_images_of_varying_size_have_no_mean_image():
    statistics = ImageStatistics()
    statistics.update(random_images(2, size=6))
    statistics.update(random_images(2, size=8))
    assert statistics.mean_image is None
    statistics.update(random_images(2, size=6))
    assert statistics.mean_image is None


def test_moments_without_a_pixel_sum_give_channel_statistics_only():
    statistics = ImageStatistics()
    image = random_images(1)[0]
    statistics.add_moments(PixelMoments.of(image))
    assert statistics.mean_image is None
    np.testing.assert_allclose(statistics.mean, image.reshape(-1, 3).mean(axis=0))
