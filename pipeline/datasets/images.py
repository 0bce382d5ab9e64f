"""Reading image files into 8-bit RGB arrays, and resizing them.

OpenCV decodes to BGR; the conversion to RGB happens here, once, and nowhere
else. `cv2.IMREAD_COLOR` also folds every other layout into 8-bit, 3-channel
colour: grey (copied into three channels), alpha (dropped, as PIL's
convert("RGB") does), palettes, CMYK JPEGs and 16-bit PNGs (scaled to 8 bits),
and it applies the EXIF orientation.
"""

from pathlib import Path

import cv2
import numpy as np

# Why a file was skipped; these strings appear in build summaries.
EMPTY_FILE = "empty file"
UNDECODABLE = "not a decodable image (corrupt, truncated or not an image)"
UNREADABLE = "unreadable file"


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
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:  # e.g. a header declaring more pixels than OpenCV allows
        last_line = (str(error).strip().splitlines() or [""])[-1]
        raise BadImage(UNDECODABLE, last_line) from None
    if image is None or image.size == 0:
        raise BadImage(UNDECODABLE)
    return image


def _read_bytes(path: str | Path) -> bytes:
    try:
        # open() rather than Path.read_bytes: no path object per file on the hot path.
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise BadImage(UNREADABLE, str(error)) from None


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
