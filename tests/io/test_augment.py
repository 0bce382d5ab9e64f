"""The batched augmentations on images whose pixels say where they came from."""

import cv2
import numpy as np
import pytest

from pipeline.datasets.images import center_crop
from pipeline.errors import UserError
from pipeline.io.augment import AUGMENTATIONS, Augmenter, build_augmenter
from pipeline.io.augment_operations import (
    BrightnessContrast,
    CenterCrop,
    Equalize,
    HorizontalFlip,
    PadCrop,
    PCALighting,
    RandomAffine,
    RandomCrop,
    ScaleCrop,
)

# Pixel (y, x) of a position image holds R = y * STEP, G = x * STEP, B = 255.
STEP = 8


def position_image(height=32, width=32):
    """An image whose pixel (y, x) is (y * 8, x * 8, 255): every pixel names its place."""
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([rows * STEP, columns * STEP, np.full_like(rows, 255)], axis=-1).astype(
        np.uint8
    )


def batch_of(image, count):
    return np.repeat(image[None], count, axis=0)


def shifted(image, down, right, pad=4):
    """The image moved down by `down` and right by `right`, zeros coming in (independently)."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    return padded[pad - down : pad - down + height, pad - right : pad - right + width]


def source_position(pixel):
    """The (y, x) of the position-image pixel a copied pixel came from."""
    assert pixel[2] == 255, "not a pixel of the image"
    return int(pixel[0]) // STEP, int(pixel[1]) // STEP


def window_origin(window):
    """Where a window cut from a position image starts (its top-left pixel's source)."""
    return source_position(window[0, 0])


def random_images(count=6, size=16, seed=0, low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, (count, size, size, 3), dtype=np.uint8)


# -- PadCrop -------------------------------------------------------------------


def recovered_shift(output):
    """(down, right) of a PadCrop output of a 32x32 position image, from any image pixel."""
    rows, columns = np.nonzero(output[:, :, 2] == 255)
    y, x = source_position(output[rows[0], columns[0]])
    return int(rows[0]) - y, int(columns[0]) - x


def test_pad_crop_is_a_shift_by_at_most_pad_with_zeros_coming_in():
    image = position_image()
    output = PadCrop(pad=4)(batch_of(image, 1500), np.random.default_rng(0))
    assert output.shape == (1500, 32, 32, 3) and output.dtype == np.uint8
    shifts = set()
    for augmented in output:
        down, right = recovered_shift(augmented)
        assert -4 <= down <= 4 and -4 <= right <= 4
        np.testing.assert_array_equal(augmented, shifted(image, down, right))
        shifts.add((down, right))
    assert len(shifts) == 81


def test_pad_crop_shifts_each_image_of_a_batch_independently():
    images = np.stack([position_image()] * 64)
    output = PadCrop(pad=2)(images, np.random.default_rng(1))
    assert len({recovered_shift(augmented) for augmented in output}) > 10


def test_pad_crop_needs_a_positive_pad():
    with pytest.raises(UserError, match="pad must be >= 1"):
        PadCrop(pad=0)


# -- RandomCrop / CenterCrop ---------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "size"), [(32, 32, 20), (32, 24, 20), (20, 32, 20)])
def test_random_crop_is_exactly_a_window_of_the_input(height, width, size):
    image = position_image(height, width)
    output = RandomCrop(size)(batch_of(image, 200), np.random.default_rng(2))
    assert output.shape == (200, size, size, 3) and output.dtype == np.uint8
    origins = set()
    for window in output:
        top, left = window_origin(window)
        assert 0 <= top <= height - size and 0 <= left <= width - size
        np.testing.assert_array_equal(window, image[top : top + size, left : left + size])
        origins.add((top, left))
    # Every offset is reachable (200 draws over at most 13 x 13 offsets).
    assert {top for top, _ in origins} == set(range(height - size + 1))
    assert {left for _, left in origins} == set(range(width - size + 1))


def test_random_crop_one_pixel_smaller_reaches_all_four_corners():
    image = position_image()
    output = RandomCrop(31)(batch_of(image, 100), np.random.default_rng(3))
    assert {window_origin(window) for window in output} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_random_crop_of_the_full_size_is_the_image():
    image = position_image()
    output = RandomCrop(32)(batch_of(image, 5), np.random.default_rng(3))
    np.testing.assert_array_equal(output, batch_of(image, 5))


@pytest.mark.parametrize(("height", "width"), [(32, 32), (40, 32), (32, 40)])
def test_random_crop_larger_than_the_images_is_a_user_error(height, width):
    images = batch_of(position_image(height, width), 2)
    with pytest.raises(UserError, match="random_crop: size 33 is larger than the images"):
        RandomCrop(33)(images, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("height", "width", "size", "top", "left"),
    [
        (32, 32, 30, 1, 1),  # even difference: equal margins
        (32, 32, 29, 1, 1),  # odd difference: the extra row / column at the bottom / right
        (32, 32, 32, 0, 0),
        (31, 36, 24, 3, 6),
    ],
)
def test_center_crop_is_the_exact_central_window(height, width, size, top, left):
    image = position_image(height, width)
    output = CenterCrop(size)(batch_of(image, 3))
    assert output.shape == (3, size, size, 3)
    for window in output:
        assert window_origin(window) == (top, left)
        np.testing.assert_array_equal(window, image[top : top + size, left : left + size])
        # The same view as the data set builders' center_crop.
        np.testing.assert_array_equal(window, center_crop(image, size, size))
    # Margins on either side differ by at most one pixel.
    assert 0 <= (height - size - top) - top <= 1 and 0 <= (width - size - left) - left <= 1


# -- HorizontalFlip --------------------------------------------------------------


def test_flip_mirrors_left_right_and_keeps_the_channels():
    image = position_image()
    output = HorizontalFlip(probability=1.0)(batch_of(image, 4), np.random.default_rng(0))
    for mirrored in output:
        np.testing.assert_array_equal(mirrored, image[:, ::-1])
        # Column 0 now holds the last column (G = x * 8 counts down) ...
        np.testing.assert_array_equal(mirrored[:, 0], image[:, 31])
        # ... rows stay where they were (not an up-down flip) ...
        np.testing.assert_array_equal(mirrored[:, :, 0], image[:, :, 0])
        # ... and the channels stay in place (B is still 255 everywhere).
        assert (mirrored[:, :, 2] == 255).all()


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_flip_probability_zero_flips_none_and_one_flips_all(probability):
    images = random_images(count=50)
    output = HorizontalFlip(probability)(images, np.random.default_rng(4))
    expected = images[:, :, ::-1] if probability else images
    np.testing.assert_array_equal(output, expected)


def test_flip_with_probability_one_half_flips_about_half_and_nothing_else():
    images = random_images(count=400, size=8)
    output = HorizontalFlip(0.5)(images, np.random.default_rng(5))
    flipped = 0
    for original, augmented in zip(images, output, strict=True):
        if np.array_equal(augmented, original[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(augmented, original)
    # Binomial(400, 0.5): mean 200, standard deviation 10.
    assert 150 <= flipped <= 250


@pytest.mark.parametrize("probability", [-0.1, 1.5])
def test_flip_probability_outside_zero_one_is_a_user_error(probability):
    with pytest.raises(UserError, match="probability must be in"):
        HorizontalFlip(probability)


# -- RandomAffine ----------------------------------------------------------------


@pytest.mark.parametrize("fill", ["nearest", "reflect", "constant"])
def test_affine_with_all_ranges_zero_is_the_identity(fill):
    images = random_images(count=8, size=17)
    output = RandomAffine(fill=fill)(images, np.random.default_rng(6))
    assert output.dtype == np.uint8 and output.shape == images.shape
    assert np.abs(output.astype(int) - images).max() <= 1


def bright_spot_centre(image):
    """The intensity-weighted centre (y, x) of a dark image's bright spot."""
    weights = image[:, :, 0].astype(float)
    rows, columns = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return (rows * weights).sum() / weights.sum(), (columns * weights).sum() / weights.sum()


def test_affine_shift_moves_a_bright_pixel_by_at_most_shift_times_size():
    size, shift = 32, 0.1
    image = np.zeros((size, size, 3), np.uint8)
    image[16, 16] = 255
    output = RandomAffine(shift=shift, fill="constant")(
        batch_of(image, 100), np.random.default_rng(7)
    )
    moves = []
    for augmented in output:
        assert augmented[:, :, 0].sum() > 0, "the spot left the image"
        y, x = bright_spot_centre(augmented)
        moves.append((y - 16, x - 16))
    moves = np.array(moves)
    assert np.abs(moves).max() <= shift * size + 1e-6
    # It does move, in both directions along both axes.
    assert moves.min(axis=0).max() < -1 and moves.max(axis=0).min() > 1


@pytest.mark.parametrize("fill", ["nearest", "reflect"])
def test_affine_rotation_with_border_fills_leaves_a_constant_image_constant(fill):
    images = np.full((20, 24, 24, 3), 200, np.uint8)
    output = RandomAffine(rotation=45, zoom=0.2, fill=fill)(images, np.random.default_rng(8))
    assert np.abs(output.astype(int) - 200).max() <= 1  # no black corners


def test_affine_rotation_with_constant_fill_brings_in_zeros():
    images = np.full((40, 24, 24, 3), 200, np.uint8)
    output = RandomAffine(rotation=45, fill="constant")(images, np.random.default_rng(8))
    assert output.max() <= 200
    corners = output[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    # Most images are turned far enough that whole corner pixels come from outside.
    assert (corners == 0).all(axis=(1, 2)).sum() > 20
    # The centre stays inside for every angle.
    assert (output[:, 12, 12] == 200).all()


def test_affine_unknown_fill_is_a_user_error():
    with pytest.raises(UserError, match="fill must be one of"):
        RandomAffine(fill="wrap")


# -- BrightnessContrast / Equalize --------------------------------------------------


def test_brightness_contrast_with_zero_ranges_is_the_identity():
    images = random_images(count=50)
    output = BrightnessContrast(brightness=0.0, contrast=0.0)(images, np.random.default_rng(9))
    np.testing.assert_array_equal(output, images)


def test_brightness_contrast_with_zero_ranges_changes_pixels_by_at_most_one():
    images = random_images(count=50)
    output = BrightnessContrast(brightness=0.0, contrast=0.0)(images, np.random.default_rng(9))
    assert np.abs(output.astype(int) - images).max() <= 1


def test_brightness_clips_to_0_255_without_wrapping_around():
    white = np.full((100, 4, 4, 3), 255, np.uint8)
    black = np.zeros((100, 4, 4, 3), np.uint8)
    augment = BrightnessContrast(brightness=0.5, contrast=0.0)
    whiter = augment(white, np.random.default_rng(10))
    blacker = augment(black, np.random.default_rng(10))
    assert whiter.dtype == np.uint8 and blacker.dtype == np.uint8
    # A wrap-around would turn 255 + 20 into 19, and 0 - 20 into 236.
    assert whiter.min() >= 255 - 128 and blacker.max() <= 128
    # Both signs were drawn: some white images stayed white, some black ones black.
    assert (whiter == 255).all(axis=(1, 2, 3)).sum() > 20
    assert (blacker == 0).all(axis=(1, 2, 3)).sum() > 20


def test_contrast_scales_about_the_image_mean_within_range():
    images = random_images(count=30, low=60, high=200)
    output = BrightnessContrast(brightness=0.0, contrast=0.5)(images, np.random.default_rng(11))
    assert output.dtype == np.uint8
    spread_before = images.reshape(30, -1).std(axis=1)
    spread_after = output.reshape(30, -1).std(axis=1)
    ratio = spread_after / spread_before
    assert ratio.min() >= 0.5 - 0.02 and ratio.max() <= 1.5 + 0.02
    means_moved = output.reshape(30, -1).mean(axis=1) - images.reshape(30, -1).mean(axis=1)
    assert np.abs(means_moved).max() < 1.5


def test_equalize_stretches_a_low_contrast_image_to_nearly_the_full_range():
    images = random_images(count=3, size=32, low=100, high=121)
    output = Equalize()(images, np.random.default_rng(12))
    assert output.dtype == np.uint8 and output.shape == images.shape
    for augmented in output:
        for channel in range(3):
            assert augmented[:, :, channel].min() <= 5
            assert augmented[:, :, channel].max() >= 250


def test_equalize_with_probability_zero_is_the_identity():
    images = random_images(count=5, low=100, high=121)
    np.testing.assert_array_equal(Equalize(0.0)(images, np.random.default_rng(0)), images)


# -- PCALighting ---------------------------------------------------------------------


def lighting_shifts(covariance, std, count=200, seed=13):
    """Each image's per-pixel RGB change, checked to be one vector across its pixels."""
    images = random_images(count=count, size=8, seed=seed, low=70, high=186)
    output = PCALighting(covariance, std=std)(images, np.random.default_rng(seed))
    assert output.dtype == np.uint8 and output.shape == images.shape
    changes = output.astype(int) - images
    first_pixel = changes[:, :1, :1, :]
    # Nothing was clipped (pixels 70..185 shifted by far less than 70), so every
    # pixel of an image moved by the same RGB vector.
    np.testing.assert_array_equal(changes, np.broadcast_to(first_pixel, changes.shape))
    return first_pixel[:, 0, 0, :]


def test_pca_lighting_with_zero_std_is_the_identity():
    images = random_images(count=10)
    covariance = [[100.0, 5.0, 1.0], [5.0, 50.0, 2.0], [1.0, 2.0, 10.0]]
    output = PCALighting(covariance, std=0.0)(images, np.random.default_rng(0))
    np.testing.assert_array_equal(output, images)


def test_pca_lighting_shifts_along_the_dominant_principal_axis():
    shifts = lighting_shifts(np.diag([100.0, 1.0, 1.0]), std=2.0)
    energy = (shifts.astype(float) ** 2).sum(axis=0)
    # Red's spread is 10 times green's and blue's: its share of the shifts is ~98 %.
    assert energy[0] > 20 * energy[1] and energy[0] > 20 * energy[2]
    assert np.abs(shifts[:, 0]).max() > 10


def test_pca_lighting_follows_correlated_principal_axes():
    grey = np.ones(3) / np.sqrt(3)
    covariance = 100.0 * np.outer(grey, grey) + np.eye(3)
    shifts = lighting_shifts(covariance, std=2.0).astype(float)
    along_grey = shifts @ grey
    share = (along_grey**2).sum() / (shifts**2).sum()
    assert share > 0.9  # brighter or darker, hardly any change of hue


def test_pca_lighting_is_unbiased_on_average():
    shifts = lighting_shifts(np.diag([1.0, 1.0, 1.0]), std=1.0, count=2000)
    # Shifts ~ N(0, 1) per channel: the mean of 2000 lies within 0.15 (7 standard errors) of 0.
    assert np.abs(shifts.mean(axis=0)).max() < 0.15


def test_pca_lighting_without_a_covariance_is_a_user_error():
    with pytest.raises(UserError, match="covariance"):
        build_augmenter([{"name": "pca_lighting"}], covariance=None)


def test_pca_lighting_takes_the_covariance_from_the_data_and_std_from_the_config():
    augmenter = build_augmenter(
        [{"name": "pca_lighting", "std": 0.3}], covariance=np.diag([4.0, 1.0, 9.0])
    )
    (lighting,) = augmenter.steps
    assert isinstance(lighting, PCALighting) and lighting.std == 0.3
    np.testing.assert_allclose(sorted(lighting.spread), [1.0, 2.0, 3.0])


# -- ScaleCrop ------------------------------------------------------------------------


def test_scale_crop_takes_images_of_different_sizes_and_batches():
    augment = ScaleCrop(min_side=20, max_side=28, size=16)
    images = [position_image(height, width) for height, width in [(24, 30), (31, 20), (16, 16)]]
    output = augment(images, np.random.default_rng(14))
    assert output.shape == (3, 16, 16, 3) and output.dtype == np.uint8
    batch = augment(batch_of(position_image(), 5), np.random.default_rng(14))
    assert batch.shape == (5, 16, 16, 3) and batch.dtype == np.uint8


def test_scale_crop_at_the_crop_size_covers_the_whole_shorter_side():
    augment = ScaleCrop(min_side=16, max_side=16, size=16)
    square, tall, wide = position_image(32, 32), position_image(48, 32), position_image(32, 48)
    output = augment([square, tall, wide], np.random.default_rng(15))
    # A square image is resized whole.
    np.testing.assert_array_equal(
        output[0], cv2.resize(square, (16, 16), interpolation=cv2.INTER_AREA)
    )
    # Others: the whole shorter side, a window along the longer one.
    resized_tall = cv2.resize(tall, (16, 24), interpolation=cv2.INTER_AREA)
    resized_wide = cv2.resize(wide, (24, 16), interpolation=cv2.INTER_AREA)
    assert any(np.array_equal(output[1], resized_tall[top : top + 16]) for top in range(9)), (
        "not a full-width window of the resized tall image"
    )
    assert any(np.array_equal(output[2], resized_wide[:, left : left + 16]) for left in range(9)), (
        "not a full-height window of the resized wide image"
    )


def test_scale_crop_cuts_from_the_resized_image():
    augment = ScaleCrop(min_side=24, max_side=24, size=16)
    image = position_image()
    resized = cv2.resize(image, (24, 24), interpolation=cv2.INTER_AREA)
    windows = {
        (top, left): resized[top : top + 16, left : left + 16]
        for top in range(9)
        for left in range(9)
    }
    output = augment(batch_of(image, 60), np.random.default_rng(16))
    found = set()
    for crop in output:
        matches = [place for place, window in windows.items() if np.array_equal(crop, window)]
        assert matches, "the crop is not a window of the resized image"
        found.add(matches[0])
    assert len(found) > 20


def test_scale_crop_shorter_side_is_drawn_between_min_and_max():
    image = position_image()
    output = ScaleCrop(min_side=20, max_side=28, size=16)(
        batch_of(image, 60), np.random.default_rng(17)
    )
    sides = []
    for crop in output:
        # R = y * 8 on the 32-row original: after resizing to `side` rows, R climbs
        # 256 / side per row.
        slope = np.polyfit(np.arange(2, 14), crop[2:14, 8, 0].astype(float), 1)[0]
        sides.append(256 / slope)
    sides = np.array(sides)
    assert sides.min() > 19.5 and sides.max() < 28.5
    assert len(set(np.round(sides).astype(int).tolist())) >= 6


def test_scale_crop_size_must_not_exceed_min_side():
    with pytest.raises(UserError, match="size <= min_side <= max_side"):
        ScaleCrop(min_side=20, max_side=28, size=24)
    with pytest.raises(UserError, match="size <= min_side <= max_side"):
        ScaleCrop(min_side=30, max_side=28, size=24)


# -- determinism, in place, building ---------------------------------------------------------

RANDOM_AUGMENTATIONS = {
    "pad_crop": lambda: PadCrop(2),
    "random_crop": lambda: RandomCrop(12),
    "flip": lambda: HorizontalFlip(),
    "affine": lambda: RandomAffine(rotation=20, zoom=0.1, shift=0.1, shear=10),
    "brightness_contrast": lambda: BrightnessContrast(),
    "equalize": lambda: Equalize(probability=0.5),
    "pca_lighting": lambda: PCALighting(np.diag([100.0, 50.0, 10.0])),
    "scale": lambda: ScaleCrop(16, 24, 12),
}


@pytest.mark.parametrize("name", sorted(RANDOM_AUGMENTATIONS))
def test_same_seed_same_output_other_seed_other_output(name):
    images = random_images(count=16)
    augment = RANDOM_AUGMENTATIONS[name]()
    first = augment(images, np.random.default_rng(21))
    again = RANDOM_AUGMENTATIONS[name]()(images, np.random.default_rng(21))
    other = augment(images, np.random.default_rng(22))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", sorted(RANDOM_AUGMENTATIONS) + ["center_crop"])
def test_augmentations_leave_their_input_untouched(name):
    images = random_images(count=8)
    original = images.copy()
    augment = CenterCrop(12) if name == "center_crop" else RANDOM_AUGMENTATIONS[name]()
    augment(images, np.random.default_rng(23))
    np.testing.assert_array_equal(images, original)


def test_center_crop_ignores_the_rng():
    images = random_images(count=4)
    np.testing.assert_array_equal(
        CenterCrop(10)(images, np.random.default_rng(1)),
        CenterCrop(10)(images, np.random.default_rng(2)),
    )


def test_unknown_augmentation_is_a_user_error_listing_the_valid_names():
    with pytest.raises(UserError, match="unknown augmentation 'mixup'") as error:
        build_augmenter([{"name": "mixup"}])
    for name in AUGMENTATIONS:
        assert name in str(error.value)
    with pytest.raises(UserError, match="unknown augmentation None"):
        build_augmenter([{"pad": 4}])


def test_unknown_option_is_a_user_error_naming_the_valid_ones():
    with pytest.raises(UserError, match="'flip' takes \\['probability'\\], not prob") as error:
        build_augmenter([{"name": "flip", "prob": 0.5}])
    assert "augmentation" in str(error.value)
    with pytest.raises(UserError, match="'affine' takes .*'rotation'.*not angle"):
        build_augmenter([{"name": "affine", "angle": 10}])
    # The covariance comes from the data, never from the config.
    with pytest.raises(UserError, match="not covariance"):
        build_augmenter([{"name": "pca_lighting", "covariance": [[1]]}], covariance=np.eye(3))


def test_reference_expands_to_affine_then_flip():
    augmenter = build_augmenter([{"name": "reference", "fill": "constant"}])
    affine, flip = augmenter.steps
    assert isinstance(affine, RandomAffine) and isinstance(flip, HorizontalFlip)
    assert (affine.rotation, affine.zoom, affine.shift, affine.shear) == (18, 0.15, 0.2, 0.15)
    assert affine.border == cv2.BORDER_CONSTANT and flip.probability == 0.5
    assert isinstance(build_augmenter([{"name": "reference"}]).steps[0], RandomAffine)


def test_build_augmenter_keeps_the_order_and_options_of_the_specs():
    specs = [
        {"name": "flip", "probability": 0.3},
        {"name": "reference"},
        {"name": "pad_crop", "pad": 3},
        {"name": "center_crop", "size": 8},
    ]
    augmenter = build_augmenter(specs)
    kinds = [type(step) for step in augmenter.steps]
    assert kinds == [HorizontalFlip, RandomAffine, HorizontalFlip, PadCrop, CenterCrop]
    assert augmenter.steps[0].probability == 0.3 and augmenter.steps[3].pad == 3
    # The specs themselves are not consumed.
    assert specs[0] == {"name": "flip", "probability": 0.3}


def test_augmenter_applies_its_steps_in_order_with_one_rng():
    images = random_images(count=6)
    augmenter = build_augmenter(
        [{"name": "pad_crop", "pad": 2}, {"name": "random_crop", "size": 10}]
    )
    output = augmenter(images, np.random.default_rng(24))
    rng = np.random.default_rng(24)
    expected = RandomCrop(10)(PadCrop(2)(images, rng), rng)
    np.testing.assert_array_equal(output, expected)
    assert output.flags["C_CONTIGUOUS"]
    assert not Augmenter([]).sizes_images and not augmenter.sizes_images
    assert build_augmenter([{"name": "scale", "size": 8}]).sizes_images


def test_keras_randaugment_returns_uint8_of_the_same_shape():
    augmenter = build_augmenter([{"name": "randaugment", "num_ops": 1, "seed": 3}])
    images = random_images(count=2, size=16)
    output = augmenter(images, np.random.default_rng(0))
    assert output.shape == images.shape and output.dtype == np.uint8


def test_keras_randaugment_draws_follow_the_batch_rng_so_a_resume_repeats_them():
    augmenter = build_augmenter([{"name": "randaugment", "num_ops": 2, "factor": 0.9}])
    images = random_images(count=4, size=16)
    first = augmenter(images, np.random.default_rng(5))
    augmenter(images, np.random.default_rng(6))  # another batch in between
    again = augmenter(images, np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)
    others = [augmenter(images, np.random.default_rng(seed)) for seed in range(7, 12)]
    assert any(not np.array_equal(first, other) for other in others)
