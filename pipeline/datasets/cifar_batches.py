"""The contents of CIFAR's pickled batch files as arrays: images, labels and class names.

A batch file's `data` rows are channel-planar (1024 R, 1024 G, then 1024 B values,
each plane a row-major 32x32 image); they become (N, 32, 32, 3) RGB images. Every
entry is checked, since the download is untrusted input: a wrong one is a
UserError naming the file and the key.
"""

import numpy as np

from pipeline.datasets.cifar import PickledFile, one_line
from pipeline.errors import UserError

IMAGE_SIDE = 32
PLANE_SIZE = IMAGE_SIDE * IMAGE_SIDE
ROW_SIZE = 3 * PLANE_SIZE


def get_entry(pickled: PickledFile, key: bytes):
    """One entry of a CIFAR file's dict, or a UserError naming the file and the key."""
    contents = pickled.contents
    if not isinstance(contents, dict) or key not in contents:
        raise UserError(
            f"{pickled.location} has no {key.decode()!r} entry; "
            f"is it a file of the CIFAR data set asked for?"
        )
    return contents[key]


def planar_rows_to_rgb(data, location: str) -> np.ndarray:
    """Channel-planar uint8 rows (N, 3072) as RGB images (N, 32, 32, 3)."""
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise UserError(f"{location}: 'data' is not a uint8 array of rows; download it again")
    if data.shape[1] != ROW_SIZE:
        raise UserError(
            f"{location}: 'data' rows hold {data.shape[1]} values, expected {ROW_SIZE} "
            f"(3 planes of {IMAGE_SIDE}x{IMAGE_SIDE})"
        )
    # Each row is R plane, G plane, B plane, each row-major: (N, channel, y, x) -> (N, y, x, C).
    return data.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1)


def decode_class_names(pickled: PickledFile, names_key: bytes) -> list[str]:
    """The class names (stored as Python 2 byte strings) as text: distinct, non-empty,
    printable UTF-8 (a name ends up in file names, reports and terminals)."""
    names = get_entry(pickled, names_key)
    key = names_key.decode()
    if not isinstance(names, list | tuple) or not names:
        raise UserError(f"{pickled.location}: {key!r} is not a list of names")
    decoded = []
    for index, name in enumerate(names):
        try:
            text = name.decode("utf-8") if isinstance(name, bytes) else name
        except UnicodeDecodeError:
            text = None
        if not isinstance(text, str) or not text.strip() or not text.isprintable():
            raise UserError(
                f"{pickled.location}: {key!r} entry {index} ({one_line(repr(name))[:60]}) is "
                f"not a printable UTF-8 name"
            )
        decoded.append(text)
    if len(set(decoded)) != len(decoded):
        repeated = sorted({name for name in decoded if decoded.count(name) > 1})
        raise UserError(f"{pickled.location}: {key!r} repeats {', '.join(repeated)[:80]}")
    return decoded


def read_batch(
    pickled: PickledFile, labels_key: bytes, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """A batch file's images (N, 32, 32, 3) and labels (N,) checked against the class count."""
    images = planar_rows_to_rgb(get_entry(pickled, b"data"), pickled.location)
    try:
        labels = np.asarray(get_entry(pickled, labels_key))
    except (TypeError, ValueError):
        labels = None
    if labels is not None and labels.size == 0:
        # An empty list becomes a float array; it is still a valid (empty) list of ids.
        labels = labels.astype(np.int64)
    label_name = labels_key.decode()
    if labels is None or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{pickled.location}: {label_name!r} is not a list of class ids")
    if len(labels) != len(images):
        raise UserError(
            f"{pickled.location}: {len(images)} images but {len(labels)} {label_name!r}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{pickled.location}: {label_name!r} run from {labels.min()} to {labels.max()}, "
            f"outside the {num_classes} classes"
        )
    return images, labels.astype(np.int32)


def join_batches(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate batches in order into one contiguous (images, labels) pair."""
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return np.ascontiguousarray(images), labels
