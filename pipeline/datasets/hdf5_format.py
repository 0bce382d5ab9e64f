"""The HDF5 split file: the public format every builder writes and the loader reads.

One file per split (`train.h5`, `val.h5`, `test.h5`) holding:
- `images`: uint8 (N, H, W, 3), RGB, chunked along N;
- `labels`: int32 (N,) class ids;
- `class_names`: UTF-8 strings in id order;
- attributes `format_version`, `mean`, `std` (RGB, 0-255 scale, train split
  only), `num_classes`, `source`, `split`, `encoding`, and `complete`, written last;
- optionally `covariance` (3x3 RGB, train split) and the dataset `mean_image`
  (H, W, 3 float32, train split) when all images share one size.
With `encoding = "jpeg"`, `images` holds one variable-length uint8 array of
JPEG bytes per sample instead (images of varying size, decoded when loaded).
A file is written as `<name>.partial` and renamed when complete, so a reader
never mistakes a half-written file for a whole one.

The code is in four modules: this one holds the contract (its constants, the file
of each split, and the check of every field a reader relies on); hdf5_reader
opens and reads a split; hdf5_writer writes one; hdf5_commit moves a whole build
into place.
"""

from pathlib import Path

import h5py
import numpy as np

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
ENCODINGS = ("raw", "jpeg")
PARTIAL_SUFFIX = ".partial"
# About 1 MiB per chunk: large enough for fast sequential reads, small enough
# that reading one random sample does not drag in much more than it needs.
TARGET_CHUNK_BYTES = 1 << 20


def chunk_rows_for(image_shape) -> int:
    """Images per chunk: about TARGET_CHUNK_BYTES, rounded down to a power of two.

    A power of two divides the writers' batches of 256, so every append fills
    whole chunks and HDF5 never reads a half-written chunk back to finish it.
    """
    rows = max(1, TARGET_CHUNK_BYTES // int(np.prod(image_shape)))
    return 1 << (rows.bit_length() - 1)


def split_path(dataset_dir: str | Path, split: str) -> Path:
    """The file of one split inside a dataset directory."""
    return Path(dataset_dir) / f"{split}.h5"


class ContractError(Exception):
    """A field of a split file that does not follow docs/hdf5_format.md."""


def check_contract(handle: h5py.File) -> None:
    """Check every field a reader relies on (docs/hdf5_format.md), naming the first that
    is wrong: trusting a damaged or forged file could train on mislabelled data."""
    attrs = handle.attrs
    for name in ("mean", "std", "num_classes", "source", "split"):
        if name not in attrs:
            raise ContractError(f"attribute '{name}' is missing")
    encoding = attrs.get("encoding", "raw")
    if encoding not in ENCODINGS:
        raise ContractError(f"attribute 'encoding' is {encoding!r}, not one of {ENCODINGS}")
    for name in ("source", "split"):
        if not isinstance(attrs[name], str):
            raise ContractError(f"attribute '{name}' is not text")
    for name in ("mean", "std"):
        values = np.asarray(attrs[name])
        if (
            values.shape != (3,)
            or values.dtype.kind not in "fiu"
            or not np.all(np.isfinite(values))
        ):
            raise ContractError(f"attribute '{name}' is not 3 finite numbers")
    if np.any(np.asarray(attrs["std"]) <= 0):
        raise ContractError("attribute 'std' is not positive")
    if "covariance" in attrs:
        covariance = np.asarray(attrs["covariance"])
        if covariance.shape != (3, 3) or covariance.dtype.kind not in "fiu":
            raise ContractError("attribute 'covariance' is not 3 x 3 numbers")
        if not np.all(np.isfinite(covariance)):
            raise ContractError("attribute 'covariance' is not finite")
    if "build_id" in attrs and not isinstance(attrs["build_id"], str):
        raise ContractError("attribute 'build_id' is not text")
    num_classes = attrs["num_classes"]
    if not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ContractError(f"attribute 'num_classes' is {num_classes!r}, not a count >= 1")
    _check_images(handle, encoding)
    _check_class_names(handle, int(num_classes))
    _check_labels(handle, int(num_classes))


def _dataset(handle: h5py.File, name: str) -> h5py.Dataset:
    if not isinstance(handle.get(name), h5py.Dataset):
        raise ContractError(f"dataset '{name}' is missing")
    return handle[name]


def _check_images(handle: h5py.File, encoding: str) -> None:
    images = _dataset(handle, "images")
    if encoding == "raw":
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ContractError(
                f"dataset 'images' is {images.dtype} {images.shape}, not uint8 (N, H, W, 3)"
            )
        return
    if h5py.check_vlen_dtype(images.dtype) != np.uint8 or images.ndim != 1:
        raise ContractError("dataset 'images' is not one variable-length uint8 row per JPEG")


def _check_class_names(handle: h5py.File, num_classes: int) -> None:
    names = _dataset(handle, "class_names")
    if names.ndim != 1 or h5py.check_string_dtype(names.dtype) is None:
        raise ContractError("dataset 'class_names' is not a list of strings")
    if len(names) != num_classes:
        raise ContractError(f"{len(names)} class names for num_classes = {num_classes}")
    try:
        decoded = [name.decode("utf-8") for name in names[()]]
    except (UnicodeDecodeError, AttributeError):
        raise ContractError("dataset 'class_names' is not UTF-8 text") from None
    if any(not name.strip() for name in decoded) or len(set(decoded)) != len(decoded):
        raise ContractError("dataset 'class_names' holds an empty or repeated name")


def _check_labels(handle: h5py.File, num_classes: int) -> None:
    labels = _dataset(handle, "labels")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ContractError(f"dataset 'labels' is {labels.dtype} {labels.shape}, not integer (N,)")
    if labels.shape[0] != handle["images"].shape[0]:
        raise ContractError(f"{labels.shape[0]} labels for {handle['images'].shape[0]} images")
    if labels.shape[0]:
        values = labels[()]
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_classes:
            raise ContractError(f"labels range over {low}..{high}, outside [0, {num_classes})")
