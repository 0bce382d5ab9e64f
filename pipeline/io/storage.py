"""Where a generator's images come from: all of a split in memory, or blocks read on demand.

Both read the labels when made and open the images lazily in the process
that reads them (a forked or spawned worker opens its own handle, since HDF5
handles do not survive a fork); both are safe to share between threads.
"""

import math
import os
import threading
from collections import OrderedDict

import numpy as np

from pipeline.datasets.hdf5_format import chunk_rows_for
from pipeline.datasets.hdf5_reader import open_split
from pipeline.errors import UserError
from pipeline.io.epoch_order import DiskLayout

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
    """Blocks of whole chunks read on demand, the most recent `cache_blocks` kept in memory.

    Raw blocks are read straight into buffers allocated once and reused: a
    fresh 8 MiB array per block would cost more in page faults than the read.
    """

    def __init__(self, path, *, image_shape, cache_blocks: int) -> None:
        self._file = _LazyFile(path)
        self.image_shape = image_shape
        self.block_rows = self.rows_per_block(image_shape)
        self.cache_blocks = max(1, cache_blocks)
        with open_split(path) as handle:
            self.labels = handle["labels"][()]
        self._reset_cache()

    @staticmethod
    def rows_per_block(image_shape) -> int:
        """Whole chunks adding up to about TARGET_BLOCK_BYTES."""
        if image_shape is None:
            # JPEG rows: chunks of 256 encoded images (see hdf5_writer).
            return 256 * 8
        chunk = chunk_rows_for(image_shape)
        return chunk * max(1, TARGET_BLOCK_BYTES // (chunk * int(np.prod(image_shape))))

    def _reset_cache(self) -> None:
        self._cache = OrderedDict()  # block -> rows (a view of a buffer, or JPEG rows)
        self._buffers = None  # (cache_blocks, block_rows, H, W, 3), allocated on first read
        self._free_slots = list(range(self.cache_blocks))
        self._slot_of = {}

    def read(self, indices: np.ndarray):
        blocks = indices // self.block_rows
        offsets = indices - blocks * self.block_rows
        needed = np.unique(blocks).tolist()
        with self._file.lock:
            # Under the lock: no other thread may evict a block between load and gather.
            for block in needed:
                self._block(block)
            if self.image_shape is not None:
                # All cached blocks live in one buffer: one gather serves the whole batch.
                slots = np.array([self._slot_of[block] for block in needed])
                slot_of_index = slots[np.searchsorted(needed, blocks)]
                flat = self._buffers.reshape(-1, *self.image_shape)
                return flat[slot_of_index * self.block_rows + offsets]
            output = np.empty(len(indices), dtype=object)
            for block in needed:
                selected = blocks == block
                output[selected] = self._cache[block][offsets[selected]]
            return output

    def _block(self, block: int) -> np.ndarray:
        """The rows of `block`, read if not cached (the caller holds the lock)."""
        rows = self._cache.get(block)
        if rows is not None:
            self._cache.move_to_end(block)
            return rows
        while len(self._cache) >= self.cache_blocks:
            evicted, _ = self._cache.popitem(last=False)
            if evicted in self._slot_of:
                self._free_slots.append(self._slot_of.pop(evicted))
        rows = self._read_block(block)
        self._cache[block] = rows
        return rows

    def _read_block(self, block: int) -> np.ndarray:
        images = self._file.handle()["images"]
        start = block * self.block_rows
        stop = min(start + self.block_rows, images.shape[0])
        if self.image_shape is None:
            return images[start:stop]
        if self._buffers is None:
            shape = (self.cache_blocks, self.block_rows, *self.image_shape)
            self._buffers = np.empty(shape, dtype=np.uint8)
        slot = self._free_slots.pop()
        self._slot_of[block] = slot
        destination = self._buffers[slot, : stop - start]
        images.read_direct(destination, source_sel=np.s_[start:stop])
        return destination

    def __getstate__(self):
        return {
            "path": self._file.path,
            "image_shape": self.image_shape,
            "block_rows": self.block_rows,
            "cache_blocks": self.cache_blocks,
            "labels": self.labels,
        }

    def __setstate__(self, state):
        self._file = _LazyFile(state["path"])
        self.image_shape = state["image_shape"]
        self.block_rows = state["block_rows"]
        self.cache_blocks = state["cache_blocks"]
        self.labels = state["labels"]
        self._reset_cache()


def fits_in_memory(db_path) -> bool:
    """Whether `storage = "auto"` keeps this split in memory on this machine."""
    return stored_image_bytes(db_path) <= IN_MEMORY_SHARE_OF_RAM * physical_memory_bytes()


def open_storage(info, mode: str, shuffle_buffer: int | None, batch_size: int):
    """The storage of split `info` for `mode` ("auto", "memory" or "disk"), and the
    DiskLayout a shuffled epoch order must follow to read it well (None in memory).

    Out of core, `shuffle_buffer` samples (default: about 256 MiB of them) are mixed
    in each window of whole blocks, and the cache holds every window a batch of
    `batch_size` can span, plus one for the threads on the neighbouring batches.
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
    block_rows = OutOfCoreStorage.rows_per_block(info.image_shape)
    layout = DiskLayout(block_rows, window_blocks=max(1, buffer // block_rows))
    window_rows = layout.window_blocks * block_rows
    windows_per_batch = math.ceil(batch_size / window_rows) + 1
    storage = OutOfCoreStorage(
        info.path,
        image_shape=info.image_shape,
        cache_blocks=(windows_per_batch + 1) * layout.window_blocks,
    )
    return storage, layout
