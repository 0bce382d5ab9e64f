"""Writing the HDF5 split file (the format of hdf5_format): SplitWriter and mean.json.

A split is streamed into `<name>.partial` and renamed when complete, with its
statistics and the `complete` mark written last, so that a reader never mistakes
a half-written file for a whole one.
"""

import contextlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from pipeline.datasets.hdf5_commit import fsync_file
from pipeline.datasets.hdf5_format import ENCODINGS, FORMAT_VERSION, PARTIAL_SUFFIX, chunk_rows_for


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
        # The 1.10 file format (read by every HDF5 since 2016) indexes the chunks of a
        # growing dataset in an extensible array: an appended chunk costs the same at
        # the millionth image as at the first (the 1.8 B-tree grew slower; bench/scale.py).
        self._file = h5py.File(self.partial_path, "w", libver=("v110", "latest"))
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


def write_mean_json(dataset_dir: str | Path, mean) -> Path:
    """Write `mean.json` ({"R": .., "G": .., "B": ..}) for tools that expect it."""
    path = Path(dataset_dir) / "mean.json"
    red, green, blue = (float(value) for value in mean)
    path.write_text(json.dumps({"R": red, "G": green, "B": blue}, indent=2) + "\n")
    return path
