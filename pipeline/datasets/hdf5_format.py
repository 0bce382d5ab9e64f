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
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from pipeline.datasets.kinds import build_advice, guess_kind
from pipeline.errors import UserError

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
ENCODINGS = ("raw", "jpeg")
PARTIAL_SUFFIX = ".partial"
# A build is staged in this hidden folder of the dataset directory; COMMITTED in it
# (the list of its files) says that the staged build is whole and replaces the old one.
STAGING_DIR = ".building"
COMMITTED = "COMMITTED"
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


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """What a reader needs to know about a split without loading its images."""

    path: Path
    split: str
    num_samples: int
    # None for JPEG-encoded splits, whose images vary in size.
    image_shape: tuple[int, int, int] | None
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    encoding: str = "raw"
    # 3x3 RGB covariance of the train split, when the builder stored it.
    covariance: tuple[tuple[float, ...], ...] | None = None
    # The same in every split of one build (None: built before build ids existed).
    build_id: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class SplitWriter:
    """Streams one split into an HDF5 file; use as a context manager.

    `add` appends batches; `finish` writes the statistics and `complete` and
    renames the `.partial` file into place. Leaving the block with an exception
    (or without `finish`) deletes the partial file. With `encoding="jpeg"`,
    `add` takes a list of JPEG byte strings and `image_shape` is not given.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        image_shape: tuple[int, int, int] | None = None,
        class_names: list[str] | tuple[str, ...],
        split: str,
        source: str,
        encoding: str = "raw",
    ) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if (encoding == "raw") != (image_shape is not None):
            raise ValueError("raw splits need an image_shape; JPEG-encoded ones take none")
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.encoding = encoding
        self.image_shape = tuple(int(size) for size in image_shape) if image_shape else None
        self.num_classes = len(class_names)
        self.num_written = 0
        # Labels are kept here and written once at finish: per-batch writes of a few
        # hundred integers cost HDF5 more than the batch's images do.
        self._label_batches = []
        self._capacity = 0  # rows the images dataset has room for (asking h5py is slow)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.partial_path, "w")
        if encoding == "raw":
            chunk_rows = chunk_rows_for(self.image_shape)
            self._chunk_rows = chunk_rows
            # Rows of the last, unfilled chunk, held back until it fills (or at finish).
            self._pending = np.empty((0, *self.image_shape), dtype=np.uint8)
            self._images = self._file.create_dataset(
                "images",
                shape=(0, *self.image_shape),
                maxshape=(None, *self.image_shape),
                dtype=np.uint8,
                chunks=(chunk_rows, *self.image_shape),
            )
        else:
            # Chunks of 256 encoded images: about 30 MiB of ImageNet JPEGs.
            chunk_rows = 256
            self._images = self._file.create_dataset(
                "images",
                shape=(0,),
                maxshape=(None,),
                dtype=h5py.vlen_dtype(np.uint8),
                chunks=(chunk_rows,),
            )
        self._labels = self._file.create_dataset(
            "labels", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(max(chunk_rows, 1024),)
        )
        self._file.create_dataset(
            "class_names", data=list(class_names), dtype=h5py.string_dtype("utf-8")
        )
        self._file.attrs["format_version"] = FORMAT_VERSION
        self._file.attrs["num_classes"] = self.num_classes
        self._file.attrs["split"] = split
        # A source path with non-UTF-8 bytes is kept, its bad bytes as escapes.
        self._file.attrs["source"] = source.encode("utf-8", "backslashreplace").decode("utf-8")
        self._file.attrs["encoding"] = encoding

    def add(self, images, labels: np.ndarray) -> None:
        """Append a batch: uint8 RGB images (n, H, W, 3), or n JPEG byte strings; class ids (n,)."""
        if self.encoding == "jpeg":
            # h5py writes variable-length rows from a 1-D object array of uint8 arrays.
            encoded_rows = np.empty(len(images), dtype=object)
            encoded_rows[:] = [np.frombuffer(encoded, dtype=np.uint8) for encoded in images]
            images = encoded_rows
        elif images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(
                f"expected uint8 images of shape (n, {self.image_shape}), "
                f"got {images.dtype} {images.shape}"
            )
        labels = np.asarray(labels)
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}"
            )
        start, stop = self.num_written, self.num_written + len(images)
        if stop > self._capacity:
            # Grown in doubling steps (each resize costs HDF5 a metadata update) and cut
            # to the rows written at finish.
            self._capacity = max(stop, 2 * self._capacity)
            self._images.resize(self._capacity, axis=0)
        if self.encoding == "raw":
            self._write_whole_chunks(images)
        else:
            # write_direct, not slice assignment: h5py would broadcast a batch of one
            # payload, or of payloads of equal length, as a 2-D array and fail.
            self._images.write_direct(images, dest_sel=np.s_[start:stop])
        self._label_batches.append(labels.astype(np.int32))
        self.num_written = stop

    def _write_whole_chunks(self, images: np.ndarray) -> None:
        """Write every chunk the new rows complete straight to the file.

        HDF5's direct chunk write skips its hyperslab selection and chunk cache:
        measured, it halves the cost of writing (to the cost of a plain file
        write). It takes whole chunks only, so the rows of an unfilled last
        chunk wait in `_pending` (only after a short batch: the builders' full
        batches are powers of two, which fill whole chunks).
        """
        rows = self._chunk_rows
        first_row = self.num_written - len(self._pending)  # chunk-aligned
        if len(self._pending):
            images = np.concatenate([self._pending, images])
        whole = len(images) - len(images) % rows
        for offset in range(0, whole, rows):
            chunk = np.ascontiguousarray(images[offset : offset + rows])
            self._images.id.write_direct_chunk((first_row + offset, 0, 0, 0), chunk)
        self._pending = images[whole:].copy()

    def _flush_pending(self) -> None:
        """Write the last, partly filled chunk (padded; the padding lies past the extent)."""
        if self.encoding != "raw" or not len(self._pending):
            return
        chunk = np.zeros((self._chunk_rows, *self.image_shape), dtype=np.uint8)
        chunk[: len(self._pending)] = self._pending
        first_row = self.num_written - len(self._pending)
        self._images.id.write_direct_chunk((first_row, 0, 0, 0), chunk)
        self._pending = self._pending[:0]

    def finish(self, mean, std, *, covariance=None, mean_image=None) -> Path:
        """Write the statistics and the `complete` mark, then move the file into place."""
        self._flush_pending()
        self._images.resize(self.num_written, axis=0)
        if self._label_batches:
            self._labels.resize(self.num_written, axis=0)
            self._labels[:] = np.concatenate(self._label_batches)
        self._file.attrs["mean"] = np.asarray(mean, dtype=np.float64)
        self._file.attrs["std"] = np.asarray(std, dtype=np.float64)
        if covariance is not None:
            self._file.attrs["covariance"] = np.asarray(covariance, dtype=np.float64)
        if mean_image is not None:
            self._file.create_dataset("mean_image", data=np.asarray(mean_image, dtype=np.float32))
        # Written last: a reader accepts only files that carry it.
        self._file.attrs["complete"] = True
        self._file.close()
        fsync_file(self.partial_path)
        os.replace(self.partial_path, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file. Closing a file whose writes failed (no
        space, file too large) fails again; the file is deleted all the same."""
        if self._file.id.valid:
            with contextlib.suppress(OSError, RuntimeError):
                self._file.close()
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self.partial_path.exists():
            self.abort()


def fsync_file(path) -> None:
    """Flush a written file's contents to disk (before it is renamed into place)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(directory) -> None:
    """Flush a folder's entries to disk, so that a rename in it survives a power cut."""
    # Some file systems cannot sync a folder; the rename itself is still atomic.
    with contextlib.suppress(OSError):
        fsync_file(directory)


def stamp_build_id(split_files) -> str:
    """Give every split of one build the same `build_id`: a digest of their labels, shapes,
    statistics and first and last image chunks. It is a function of the content, so that
    rebuilding with the same inputs gives the same bytes, and builds that differ differ."""
    digest = hashlib.sha256()
    for path in split_files:
        with h5py.File(path, "r") as handle:
            images, labels = handle["images"], handle["labels"]
            digest.update(f"{Path(path).name} {images.shape} {images.dtype}".encode())
            digest.update(labels[()].tobytes())
            for name in ("mean", "std"):
                digest.update(np.asarray(handle.attrs[name], np.float64).tobytes())
            rows = images.chunks[0] if images.chunks else 1
            for part in (images[:rows], images[-rows:]):
                for item in part if images.dtype == object else [part]:
                    digest.update(np.ascontiguousarray(item).tobytes())
    build_id = digest.hexdigest()[:32]
    for path in split_files:
        with h5py.File(path, "a") as handle:
            handle.attrs["build_id"] = build_id
    return build_id


def commit_staged_build(dataset_dir: str | Path, files, stale) -> None:
    """Mark the staged build whole (COMMITTED lists its files and the old splits it drops),
    then move it into place. From the mark on, the new build is the data set: a kill
    during the moves is finished by the next reader or build (finish_committed_build)."""
    staging = Path(dataset_dir) / STAGING_DIR
    for name in files:
        fsync_file(staging / name)
    marker = staging / COMMITTED
    partial = marker.with_name(COMMITTED + PARTIAL_SUFFIX)
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump({"files": list(files), "stale": list(stale)}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, marker)
    fsync_directory(staging)
    finish_committed_build(dataset_dir)


def finish_committed_build(dataset_dir: str | Path) -> bool:
    """Finish moving a committed build into place, if one is staged (each step may have
    been done already: a kill can stop it anywhere). True when there was one."""
    dataset_dir = Path(dataset_dir)
    staging = dataset_dir / STAGING_DIR
    marker = staging / COMMITTED
    if not marker.is_file():
        return False
    try:
        plan = json.loads(marker.read_text(encoding="utf-8"))
        files, stale = list(plan["files"]), list(plan["stale"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{marker} is damaged; rebuild the data set with --overwrite") from None
    try:
        for name in stale:
            (dataset_dir / Path(name).name).unlink(missing_ok=True)
        for name in files:
            staged = staging / Path(name).name
            # Another reader finishing the same build may have moved it already.
            with contextlib.suppress(FileNotFoundError):
                os.replace(staged, dataset_dir / staged.name)
        fsync_directory(dataset_dir)
        marker.unlink(missing_ok=True)
    except OSError as error:
        raise UserError(
            f"{dataset_dir} holds a build stopped while it moved into place, which cannot be "
            f"finished here ({error.strerror}); open it once with write access, or rebuild it"
        ) from None
    shutil.rmtree(staging, ignore_errors=True)
    return True


def check_same_build(*infos: "SplitInfo") -> None:
    """Refuse splits of different builds side by side (train from one, val from another)."""
    known = [info for info in infos if info is not None and info.build_id]
    if len({info.build_id for info in known}) > 1:
        described = ", ".join(f"{info.path.name} {info.build_id[:8]}" for info in known)
        raise UserError(
            f"the splits of {known[0].path.parent} come from different builds ({described}); "
            f"rebuild the data set with --overwrite"
        )


def open_split(path: str | Path) -> h5py.File:
    """Open a split for reading after checking that it is whole and of a known version."""
    path = Path(path)
    # A build killed while moving its files into place is finished first: the reader
    # sees the new data set whole, never half old and half new.
    finish_committed_build(path.parent)
    if not path.is_file():
        # No config says which data set belongs here: the folder's name may.
        raise missing_split_error(path, build_advice(guess_kind(path.parent), path.parent))
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise UserError(f"{path} is not a readable HDF5 file ({error}); rebuild it") from None
    if not _is_complete(handle.attrs.get("complete", False)):
        handle.close()
        raise UserError(f"{path} was never completed (no 'complete' mark); rebuild it")
    version = handle.attrs.get("format_version", -1)
    if not isinstance(version, int | np.integer) or int(version) not in SUPPORTED_FORMAT_VERSIONS:
        handle.close()
        raise UserError(
            f"{path} has format_version {version}, this version reads "
            f"{SUPPORTED_FORMAT_VERSIONS}; rebuild it or update the pipeline"
        )
    try:
        check_contract(handle)
    except ContractError as error:
        handle.close()
        raise UserError(f"{path} breaks the split format: {error}; rebuild it") from None
    return handle


def missing_split_error(path: Path, advice: str) -> UserError:
    """The error for a split file that is not there, with `advice` on building it."""
    hint = ""
    if path.with_name(path.name + PARTIAL_SUFFIX).exists():
        hint = " (only an unfinished .partial build is there)"
    return UserError(f"dataset file {path} does not exist{hint}; {advice}")


def _is_complete(mark) -> bool:
    """The `complete` mark: one true value (a forged [1, 1] is no mark)."""
    value = np.asarray(mark)
    return value.shape == () and value.dtype.kind in "biu" and bool(value)


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


def read_split_info(path: str | Path) -> SplitInfo:
    """Read a split's metadata (shapes, class names, statistics) without its images."""
    with open_split(path) as handle:
        class_names = tuple(name.decode("utf-8") for name in handle["class_names"][()])
        encoding = str(handle.attrs.get("encoding", "raw"))
        image_shape = None
        if encoding == "raw":
            image_shape = tuple(int(size) for size in handle["images"].shape[1:])
        return SplitInfo(
            path=Path(path),
            split=str(handle.attrs["split"]),
            num_samples=int(handle["labels"].shape[0]),
            image_shape=image_shape,
            class_names=class_names,
            mean=tuple(float(value) for value in handle.attrs["mean"]),
            std=tuple(float(value) for value in handle.attrs["std"]),
            source=str(handle.attrs["source"]),
            encoding=encoding,
            covariance=_as_nested_tuple(handle.attrs.get("covariance")),
            build_id=str(handle.attrs["build_id"]) if "build_id" in handle.attrs else None,
        )


def _as_nested_tuple(matrix):
    return None if matrix is None else tuple(tuple(float(v) for v in row) for row in matrix)


def read_mean_image(path: str | Path) -> np.ndarray:
    """The split's per-pixel mean image (H, W, 3, float32); a UserError when it has none."""
    with open_split(path) as handle:
        if "mean_image" not in handle:
            raise UserError(
                f"{path} has no mean_image (JPEG-encoded or built before it existed); "
                f"rebuild it or use model.normalization = 'channel'"
            )
        return handle["mean_image"][()]


def write_mean_json(dataset_dir: str | Path, mean) -> Path:
    """Write `mean.json` ({"R": .., "G": .., "B": ..}) for tools that expect it."""
    path = Path(dataset_dir) / "mean.json"
    red, green, blue = (float(value) for value in mean)
    path.write_text(json.dumps({"R": red, "G": green, "B": blue}, indent=2) + "\n")
    return path
