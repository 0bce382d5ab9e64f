import numpy as np

from pipeline.datasets.statistics import PIXELS_PER_STEP, ImageStatistics, PixelMoments


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
    np.testing.assert_allclose(statistics.covariance, np.cov(pixels.T, bias=True), rtol=1e-9)
    np.testing.assert_allclose(statistics.mean_image, images.mean(axis=0), rtol=1e-6)
    assert statistics.mean_image.dtype == np.float32


def test_moments_computed_in_pieces_add_up_to_the_whole():
    images = random_images(4)
    whole = PixelMoments.of(images)
    parts = PixelMoments()
    for image in images:
        parts.add(PixelMoments.of(image))
    assert parts.count == whole.count == 4 * 36
    np.testing.assert_allclose(parts.sums, whole.sums)
    np.testing.assert_allclose(parts.products, whole.products)


def test_large_inputs_are_processed_in_bounded_steps():
    images = np.full((1, PIXELS_PER_STEP + 10, 1, 3), 255, np.uint8)
    moments = PixelMoments.of(images)
    assert moments.count == PIXELS_PER_STEP + 10
    np.testing.assert_allclose(moments.sums, 255.0 * moments.count)


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
