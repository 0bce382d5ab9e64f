import io

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.datasets.images import (
    EMPTY_FILE,
    TOO_LARGE,
    UNDECODABLE,
    BadImage,
    center_crop,
    decode_image,
    encode_jpeg,
    read_image_file,
    read_image_file_into,
    resize_and_center_crop,
    resize_shorter_side,
)

RED, GREEN, BLUE = (200, 30, 10), (10, 180, 40), (20, 40, 220)


def png_bytes(array) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


def pil_bytes(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, quality=95)
    return buffer.getvalue()


def test_colour_png_decodes_to_rgb_not_bgr():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[:] = RED[::-1]  # OpenCV writes BGR: this is red on disk
    image = decode_image(png_bytes(bgr))
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == RED


def test_pil_rgb_png_keeps_its_colours():
    image = decode_image(pil_bytes(Image.new("RGB", (3, 2), BLUE), "PNG"))
    assert tuple(image[1, 2]) == BLUE


def test_grey_becomes_three_equal_channels():
    image = decode_image(png_bytes(np.full((3, 3), 77, np.uint8)))
    assert image.shape == (3, 3, 3)
    assert tuple(image[0, 0]) == (77, 77, 77)


def test_alpha_is_dropped_keeping_the_colour():
    rgba = Image.new("RGBA", (2, 2), (*GREEN, 0))
    assert tuple(decode_image(pil_bytes(rgba, "PNG"))[0, 0]) == GREEN


def test_palette_image_gives_its_colour():
    palette = Image.new("P", (2, 2))
    palette.putpalette([*RED] + [0] * 765)
    assert tuple(decode_image(pil_bytes(palette, "PNG"))[0, 0]) == RED


def test_cmyk_jpeg_gives_the_right_colour():
    cmyk = Image.new("RGB", (8, 8), RED).convert("CMYK")
    pixel = decode_image(pil_bytes(cmyk, "JPEG"))[4, 4].astype(int)
    np.testing.assert_allclose(pixel, RED, atol=8)


def test_sixteen_bit_png_is_scaled_to_eight_bits():
    deep = np.zeros((2, 2, 3), np.uint16)
    deep[..., 2] = 65535  # red channel of a BGR array, full scale
    deep[..., 0] = 256 * 100  # blue = 100/255 of full scale
    image = decode_image(png_bytes(deep))
    assert image.dtype == np.uint8
    assert tuple(image[0, 0]) == (255, 0, 100)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", EMPTY_FILE),
        (b"this is a text file, not an image", UNDECODABLE),
    ],
)
def test_unusable_bytes_raise_bad_image_with_a_reason(data, reason):
    with pytest.raises(BadImage) as raised:
        decode_image(data)
    assert raised.value.reason == reason


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_and_png_are_refused(keep):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for encoded in (encode_jpeg(noisy), png_bytes(noisy)):
        with pytest.raises(BadImage):
            decode_image(encoded[: int(len(encoded) * keep)])


def test_resize_shorter_side_keeps_the_aspect_ratio():
    image = np.zeros((100, 50, 3), np.uint8)
    assert resize_shorter_side(image, 20).shape == (40, 20, 3)
    assert resize_shorter_side(image, 100).shape == (200, 100, 3)


def test_centre_crop_takes_the_middle():
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, 10:20] = 255
    crop = center_crop(image, 10, 10)
    assert crop.shape == (10, 10, 3) and crop.min() == 255


def test_resize_and_centre_crop_gives_a_square_from_the_centre():
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, 20:40] = GREEN
    square = resize_and_center_crop(image, 10)
    assert square.shape == (10, 10, 3)
    assert tuple(square[5, 5]) == GREEN


def test_jpeg_round_trip_keeps_rgb_order():
    image = np.zeros((16, 16, 3), np.uint8)
    image[:] = RED
    decoded = decode_image(encode_jpeg(image)).astype(int)
    np.testing.assert_allclose(decoded[8, 8], RED, atol=4)


@pytest.mark.parametrize(("height", "width", "size"), [(37, 50, 16), (40, 40, 40), (9, 30, 24)])
def test_reading_into_a_buffer_gives_the_pixels_of_decode_then_resize(
    tmp_path, height, width, size
):
    """The builders' fused path (resize in BGR, convert into the slot) must store the
    very pixels of the plain one: RGB order and resampling included."""
    rng = np.random.default_rng(height)
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))
    out = np.zeros((size, size, 3), np.uint8)
    read_image_file_into(str(path), size, out)
    expected = resize_and_center_crop(read_image_file(str(path))[1], size)
    np.testing.assert_array_equal(out, expected)


def test_reading_into_a_buffer_of_the_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(ValueError, match="out must be a 8x8x3"):
        read_image_file_into(str(path), 8, np.zeros((8, 8, 4), np.uint8))


def test_a_header_declaring_too_many_pixels_is_a_bad_image_not_a_crash():
    """OpenCV raises (rather than returning None) for images beyond its pixel limit; a
    hostile or broken header must be skipped like any other undecodable file."""
    import struct
    import zlib

    png = bytearray(png_bytes(np.zeros((2, 2, 3), np.uint8)))
    # IHDR: length (4), type (4), then width and height, then its CRC over type + data.
    png[16:24] = struct.pack(">II", 60000, 60000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    with pytest.raises(BadImage) as raised:
        decode_image(bytes(png))
    assert raised.value.reason == TOO_LARGE
