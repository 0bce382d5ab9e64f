"""Reading image files into 8-bit RGB arrays, and resizing them.

OpenCV decodes to BGR; the conversion to RGB happens here, once, and nowhere
else. `cv2.IMREAD_COLOR` also folds every other layout into 8-bit, 3-channel
colour: grey (copied into three channels), alpha (dropped, as PIL's
convert("RGB") does), palettes, CMYK JPEGs and 16-bit PNGs (scaled to 8 bits),
and it applies the EXIF orientation.
"""

import os
import stat
import struct
from pathlib import Path

# The most pixels an image may declare, checked by OpenCV from the header before it
# decodes anything (OpenCV's own default is 2**30: 3 GiB of pixels in one worker).
# 8192 x 8192, more than any ImageNet or Caltech-256 photograph; OPENCV_IO_MAX_IMAGE_PIXELS
# set in the environment takes precedence. Set before OpenCV first reads it.
MAX_IMAGE_PIXELS = 8192 * 8192
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

# The largest image file read (the largest ImageNet JPEG is about 15 MB).
MAX_IMAGE_BYTES = 64 << 20

# Why a file was skipped; these strings appear in build summaries.
EMPTY_FILE = "empty file"
UNDECODABLE = "not a decodable image (corrupt, truncated or not an image)"
UNREADABLE = "unreadable file"
NOT_A_FILE = "not a regular file (a folder, FIFO, device or socket)"
TOO_LARGE = "too large (over images.MAX_IMAGE_BYTES bytes or MAX_IMAGE_PIXELS pixels)"


class BadImage(Exception):
    """An image file that cannot be used; `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes into a uint8 RGB array (H, W, 3)."""
    return cv2.cvtColor(_decode_bgr(data), cv2.COLOR_BGR2RGB)


def _decode_bgr(data: bytes) -> np.ndarray:
    if not data:
        raise BadImage(EMPTY_FILE)
    declared = declared_size(data)
    if declared and declared[0] * declared[1] > MAX_IMAGE_PIXELS:
        raise BadImage(TOO_LARGE, f"{declared[0]}x{declared[1]} pixels declared")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:  # e.g. a header declaring more pixels than allowed
        last_line = (str(error).strip().splitlines() or [""])[-1]
        too_large = "validateInputImageSize" in str(error) or "too large" in str(error)
        raise BadImage(TOO_LARGE if too_large else UNDECODABLE, last_line) from None
    if image is None or image.size == 0:
        raise BadImage(UNDECODABLE)
    return image


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, BMP, WebP or JPEG header, without decoding; None
    for other formats (OpenCV's own pixel limit still applies to them)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the start-of-frame marker, which holds the size."""
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    return None


def _read_bytes(path: str | Path) -> bytes:
    """A regular file's bytes, at most MAX_IMAGE_BYTES. Opened without blocking and checked
    before reading: a FIFO would wait forever, /dev/zero would never end."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise BadImage(UNREADABLE, error.strerror or str(error)) from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise BadImage(NOT_A_FILE)
        if info.st_size > MAX_IMAGE_BYTES:
            raise BadImage(TOO_LARGE, f"{info.st_size} bytes")
        with open(descriptor, "rb", closefd=False) as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
    except OSError as error:
        raise BadImage(UNREADABLE, error.strerror or str(error)) from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_IMAGE_BYTES:  # grew while being read
        raise BadImage(TOO_LARGE, f"over {MAX_IMAGE_BYTES} bytes")
    return data


def read_image_file(path: str | Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its decoded RGB image; BadImage when it cannot be used."""
    data = _read_bytes(path)
    return data, decode_image(data)


def read_image_file_into(path: str | Path, size: int, out: np.ndarray) -> None:
    """Read a file, scale its shorter side to `size` and centre-crop it, into `out`
    (uint8, size x size x 3, RGB); BadImage when it cannot be used.

    The same pixels as resize_and_center_crop(read_image_file(path)[1], size): resizing
    treats channels alike, so converting BGR to RGB last changes nothing but the cost:
    the conversion touches only the final pixels and writes them straight into `out`
    (a builder's shared-memory slot), saving a copy.
    """
    bgr = resize_and_center_crop(_decode_bgr(_read_bytes(path)), size)
    converted = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out)
    if converted is not out:  # OpenCV allocates a new array when `out` does not fit
        raise ValueError(f"out must be a {size}x{size}x3 uint8 array, got {out.dtype} {out.shape}")


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """Scale so that the shorter side is `size` pixels, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_height = max(size, round(height * scale))
    new_width = max(size, round(width * scale))
    if (new_height, new_width) == (height, width):
        return image
    # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_width, new_height), interpolation=interpolation)


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central height x width window of an image at least that large."""
    top = (image.shape[0] - height) // 2
    left = (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width]


def resize_and_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to `size`, then the central size x size square (the papers' test view)."""
    return center_crop(resize_shorter_side(image, size), size, size)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB image as JPEG bytes."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()


def is_jpeg(data: bytes) -> bool:
    """Whether bytes start with the JPEG start-of-image marker."""
    return data[:3] == b"\xff\xd8\xff"
