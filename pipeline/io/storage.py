"""Where a generator's images come from: all of a split in memory, or blocks read on demand.

Both read the labels when made and open the images lazily in the process
that reads them (a forked or spawned worker opens its own handle, since HDF5
handles do not survive a fork); both are safe to share between threads.
"""

import math
import os
import threading

import numpy as np

from pipeline.datasets.hdf5_format import chunk_rows_for
from pipeline.datasets.hdf5_reader import open_split
from pipeline.errors import UserError
from pipeline.io.epoch_order import DiskLayout
from pipeline.io.out_of_core import OutOfCoreStorage

__all__ = ["InMemoryStorage", "OutOfCoreStorage", "open_storage", "fits_in_memory"]

STORAGE_MODES = ("auto", "memory", "disk")
# Out-of-core shuffling mixes samples within windows of about this many bytes.
DEFAULT_SHUFFLE_BUFFER_BYTES = 256 << 20

# Out-of-core reads: blocks of about this many bytes, made of whole chunks.
TARGET_BLOCK_BYTES = 8 << 20
# Auto mode keeps a split in memory when its images take at most this share of RAM.
IN_MEMORY_SHARE_OF_RAM = 0.25


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def stored_image_bytes(path) -> int:
    """Bytes of the `images` dataset as stored (JPEG bytes for encoded splits)."""
    with open_split(path) as handle:
        return int(handle["images"].id.get_storage_size())


class _LazyFile:
    """A file handle and its lock, per process: reopened after a fork, dropped when pickled."""

    def __init__(self, path) -> None:
        self.path = path
        self._pid = None
        self._handle = None
        self.lock = threading.Lock()

    def handle(self):
        if self._pid != os.getpid():
            self._handle = open_split(self.path)
            self._pid = os.getpid()
            self.lock = threading.Lock()
        return self._handle

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


class InMemoryStorage:
    """The whole split read once into memory (images and labels)."""

    def __init__(self, path) -> None:
        self._file = _LazyFile(path)
        self._images = None
        self.labels = self._read_labels()

    def _read_labels(self):
        with open_split(self._file.path) as handle:
            return handle["labels"][()]

    def plan(self, order, batch_size) -> None:
        """Nothing to read ahead: the split is read once."""
        return None

    def read(self, indices: np.ndarray, plan=None, position: int = 0):
        """Images of `indices` (a uint8 array, or an object array of JPEG bytes)."""
        if self._images is None:
            with self._file.lock:
                if self._images is None:
                    self._images = self._file.handle()["images"][()]
        return self._images[indices]

    def __getstate__(self):
        # A worker process reads the file itself rather than receiving a pickled copy.
        return {"path": self._file.path, "labels": self.labels}

    def __setstate__(self, state):
        self._file = _LazyFile(state["path"])
        self._images = None
        self.labels = state["labels"]


def rows_per_block(image_shape) -> int:
    """Rows of an out-of-core block: whole chunks adding up to about TARGET_BLOCK_BYTES."""
    if image_shape is None:
        # JPEG rows: chunks of 256 encoded images (see hdf5_writer).
        return 256 * 8
    chunk = chunk_rows_for(image_shape)
    return chunk * max(1, TARGET_BLOCK_BYTES // (chunk * int(np.prod(image_shape))))


def fits_in_memory(db_path) -> bool:
    """Whether `storage = "auto"` keeps this split in memory on this machine."""
    return stored_image_bytes(db_path) <= IN_MEMORY_SHARE_OF_RAM * physical_memory_bytes()


def open_storage(info, mode: str, shuffle_buffer: int | None, batch_size: int):
    """The storage of split `info` for `mode` ("auto", "memory" or "disk"), and the
    DiskLayout a shuffled epoch order must follow to read it well (None in memory).

    Out of core, `shuffle_buffer` samples (default: about 256 MiB of them) are mixed
    in each window of whole blocks, and the cache holds every window a batch of
    `batch_size` can span, plus the next window, read ahead.
    """
    if mode not in STORAGE_MODES:
        raise UserError(f"storage must be one of {STORAGE_MODES}, got {mode!r}")
    if mode == "auto":
        mode = "memory" if fits_in_memory(info.path) else "disk"
    if mode == "memory":
        return InMemoryStorage(info.path), None
    bytes_per_image = (
        int(np.prod(info.image_shape))
        if info.image_shape
        else max(1, stored_image_bytes(info.path) // info.num_samples)
    )
    buffer = shuffle_buffer or max(1, DEFAULT_SHUFFLE_BUFFER_BYTES // bytes_per_image)
    block_rows = rows_per_block(info.image_shape)
    layout = DiskLayout(block_rows, window_blocks=max(1, buffer // block_rows))
    window_rows = layout.window_blocks * block_rows
    windows_per_batch = math.ceil(batch_size / window_rows) + 1
    storage = OutOfCoreStorage(
        info.path,
        image_shape=info.image_shape,
        block_rows=block_rows,
        ahead_rows=window_rows,
        cache_blocks=(windows_per_batch + 1) * layout.window_blocks,
    )
    return storage, layout
