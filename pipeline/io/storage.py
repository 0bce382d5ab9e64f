"""Where a generator's images come from: all of a split in memory, or blocks read on demand.

Both open the HDF5 file lazily in the process that reads (a forked or
spawned worker opens its own handle, since HDF5 handles do not survive a
fork) and are safe to share between the threads of a thread pool.
"""

import os
import threading
from collections import OrderedDict

import numpy as np

from pipeline.datasets.hdf5_format import chunk_rows_for, open_split

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
    """The per-process, per-object state: file handle, lock and caches, rebuilt after a fork."""

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

    def read(self, indices: np.ndarray):
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


class OutOfCoreStorage:
    """Blocks of whole chunks read on demand, the most recent `cache_blocks` kept in memory."""

    def __init__(self, path, *, image_shape, cache_blocks: int) -> None:
        self._file = _LazyFile(path)
        if image_shape is None:
            # JPEG rows: chunks of 256 encoded images (see hdf5_format).
            self.block_rows = 256 * 8
        else:
            chunk = chunk_rows_for(image_shape)
            chunks_per_block = max(1, TARGET_BLOCK_BYTES // (chunk * int(np.prod(image_shape))))
            self.block_rows = chunk * chunks_per_block
        self.cache_blocks = max(1, cache_blocks)
        self._cache = OrderedDict()
        with open_split(path) as handle:
            self.labels = handle["labels"][()]

    def read(self, indices: np.ndarray):
        blocks = indices // self.block_rows
        pieces = {block: self._block(block) for block in np.unique(blocks).tolist()}
        first = next(iter(pieces.values()))
        output = np.empty((len(indices), *first.shape[1:]), dtype=first.dtype)
        for block, rows in pieces.items():
            selected = blocks == block
            output[selected] = rows[indices[selected] - block * self.block_rows]
        return output

    def _block(self, block: int) -> np.ndarray:
        with self._file.lock:
            rows = self._cache.get(block)
            if rows is not None:
                self._cache.move_to_end(block)
                return rows
            start = block * self.block_rows
            rows = self._file.handle()["images"][start : start + self.block_rows]
            self._cache[block] = rows
            while len(self._cache) > self.cache_blocks:
                self._cache.popitem(last=False)
            return rows

    def __getstate__(self):
        return {
            "path": self._file.path,
            "block_rows": self.block_rows,
            "cache_blocks": self.cache_blocks,
            "labels": self.labels,
        }

    def __setstate__(self, state):
        self._file = _LazyFile(state["path"])
        self.block_rows = state["block_rows"]
        self.cache_blocks = state["cache_blocks"]
        self.labels = state["labels"]
        self._cache = OrderedDict()
