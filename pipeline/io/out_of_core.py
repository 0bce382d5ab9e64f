"""OutOfCoreStorage: a split read in blocks of whole chunks, a few windows of blocks in memory.

Blocks are read on a small pool of threads, so several reads are in flight at once,
and with the epoch's ReadPlan the blocks the next batches will first need are read
while the current ones are served: the disk works while the loader augments.
"""

import os
import threading
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipeline.io.chunk_map import ChunkMap

# Block reads in flight at once (see chunk_map for the measurement behind it).
READ_THREADS = 4
# A block counts as done once the position passed its last use by this many batches,
# so that Keras' loader threads still serving earlier batches rarely need it again.
DONE_AFTER_BATCHES = 4


class ReadPlan:
    """When one epoch's order uses each block first and last, and how far ahead to read."""

    def __init__(self, order: np.ndarray, block_rows: int, ahead_rows: int, batch_size: int):
        blocks = np.asarray(order) // block_rows
        unique, first = np.unique(blocks, return_index=True)
        _, last_from_end = np.unique(blocks[::-1], return_index=True)
        by_first_use = np.argsort(first, kind="stable")
        self.blocks_by_first_use = unique[by_first_use]
        self.first_use = first[by_first_use]
        self.last_use = np.full(int(unique.max(initial=0)) + 1, -1, np.int64)
        self.last_use[unique] = len(blocks) - 1 - last_from_end
        self.ahead_rows = ahead_rows
        self.batch_size = batch_size

    def upcoming(self, position: int) -> np.ndarray:
        """The blocks first used in the `ahead_rows` positions from `position` on."""
        low, high = np.searchsorted(self.first_use, [position, position + self.ahead_rows])
        return self.blocks_by_first_use[low:high]

    def done_before(self, block: int, position: int) -> bool:
        """Whether the epoch uses `block` no more from `position` on."""
        return block >= len(self.last_use) or self.last_use[block] < position


class OutOfCoreStorage:
    """Blocks of `block_rows` rows read on demand; `cache_blocks` of them kept.

    Raw blocks are read into buffers allocated once and reused (a fresh 8 MiB array
    per block costs more in page faults than the read), straight from the file where
    its ChunkMap allows, through h5py otherwise. A block in use by a batch is pinned;
    a read ahead only ever replaces a block its plan says is done, never one a
    coming batch needs.
    """

    def __init__(self, path, *, image_shape, block_rows, ahead_rows, cache_blocks) -> None:
        from pipeline.datasets.hdf5_reader import open_split

        self.path = path
        self.image_shape = image_shape
        self.block_rows = block_rows
        self.ahead_rows = ahead_rows
        self.cache_blocks = max(1, cache_blocks)
        with open_split(path) as handle:
            self.labels = handle["labels"][()]
            self.num_rows = handle["images"].shape[0]
        self.chunk_map = ChunkMap.of(path) if image_shape is not None else None
        self._reset()

    def _reset(self) -> None:
        """Fresh per-process state: locks, threads and file handles do not survive a fork."""
        self._pid = os.getpid()
        self._condition = threading.Condition()
        self._pool = None
        self._handle = None
        self._buffers = None  # (cache_blocks, block_rows, H, W, 3), allocated on first read
        self._rows = [None] * self.cache_blocks  # slot -> the rows of its block
        self._free_slots = list(range(self.cache_blocks))
        self._slot_of = {}  # block -> slot, loaded or loading
        self._loading = {}  # block -> Future of its read
        self._loaded = OrderedDict()  # loaded blocks, least recently used first
        self._pins = Counter()  # block -> batches using it now

    # -- serving a batch ------------------------------------------------------------

    def plan(self, order: np.ndarray, batch_size: int) -> ReadPlan:
        """The ReadPlan of an epoch that serves `order` in batches of `batch_size`."""
        return ReadPlan(order, self.block_rows, self.ahead_rows, batch_size)

    def read(self, indices: np.ndarray, plan: ReadPlan | None = None, position: int = 0):
        """Images of `indices` (uint8 rows, or an object array of JPEG bytes). With the
        epoch's `plan` and the batch's `position` in it, reads the coming blocks ahead."""
        if self._pid != os.getpid():
            self._reset()
        blocks = indices // self.block_rows
        needed = np.unique(blocks).tolist()
        if len(needed) > self.cache_blocks:
            raise RuntimeError(f"a batch spans {len(needed)} blocks, more than the cache's")
        done = self._done_rule(plan, position)
        pending = self._claim(needed, done)
        try:
            if plan is not None:
                self._read_ahead(plan, position, done)
            for future in pending:
                future.result()
            return self._gather(indices, blocks, needed)
        finally:
            with self._condition:
                self._pins.subtract(needed)
                self._condition.notify_all()

    @staticmethod
    def _done_rule(plan: ReadPlan | None, position: int):
        """Whether the epoch is done with a block, as far as `plan` says (never without)."""
        if plan is None:
            return lambda block: False
        done_position = position - DONE_AFTER_BATCHES * plan.batch_size
        return lambda block: plan.done_before(block, done_position)

    def _claim(self, needed: list[int], done) -> list:
        """Pin every block of `needed`, starting the reads of those not in memory, in the
        slots of blocks that are `done` first; the futures of those still being read.
        Waits while the cache has no room."""
        with self._condition:
            while True:
                missing = [block for block in needed if block not in self._slot_of]
                if len(missing) <= len(self._free_slots) + self._evictable(set(needed)):
                    break
                self._condition.wait()
            for block in missing:
                slot = self._take_slot(lambda old: old not in needed, prefer=done)
                self._start_read(block, slot)
            self._pins.update(needed)
            for block in needed:
                if block in self._loaded:
                    self._loaded.move_to_end(block)
            return [self._loading[block] for block in needed if block in self._loading]

    def _read_ahead(self, plan: ReadPlan, position: int, done) -> None:
        """Start reading the blocks the coming batches will first need, in the slots of
        blocks this epoch is `done` with."""
        with self._condition:
            for block in plan.upcoming(position).tolist():
                if block in self._slot_of:
                    continue
                slot = self._take_slot(done)
                if slot is None:
                    return
                self._start_read(block, slot)

    def _gather(self, indices, blocks, needed):
        offsets = indices - blocks * self.block_rows
        with self._condition:  # pinned blocks keep their slots; the dict itself is shared
            slots = np.array([self._slot_of[block] for block in needed])
        slot_of_index = slots[np.searchsorted(needed, blocks)]
        if self.image_shape is not None:
            # All cached blocks live in one buffer: one gather serves the whole batch.
            flat = self._buffers.reshape(-1, *self.image_shape)
            return flat[slot_of_index * self.block_rows + offsets]
        output = np.empty(len(indices), dtype=object)
        for position, (slot, offset) in enumerate(zip(slot_of_index, offsets, strict=True)):
            output[position] = self._rows[slot][offset]
        return output

    # -- the cache (callers hold the condition) ----------------------------------------

    def _evictable(self, keep: set) -> int:
        return sum(1 for block in self._loaded if not self._pins[block] and block not in keep)

    def _take_slot(self, may_evict, prefer=None):
        """A free slot, or the slot of the least recently used unpinned loaded block that
        `may_evict` allows, one that `prefer`s first (evicted); None if there is none."""
        if self._free_slots:
            return self._free_slots.pop()
        for rule in (prefer, None) if prefer else (None,):
            for block in self._loaded:
                if not self._pins[block] and may_evict(block) and (rule is None or rule(block)):
                    del self._loaded[block]
                    return self._slot_of.pop(block)
        return None

    def _start_read(self, block: int, slot: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="block-read")
        self._slot_of[block] = slot
        self._loading[block] = self._pool.submit(self._read_into, block, slot)

    def _read_into(self, block: int, slot: int) -> None:
        """Read `block` into `slot` (on a pool thread), then mark it loaded."""
        try:
            self._rows[slot] = self._read_block(block, slot)
        except BaseException:
            with self._condition:
                del self._slot_of[block], self._loading[block]
                self._free_slots.append(slot)
                self._condition.notify_all()
            raise
        with self._condition:
            del self._loading[block]
            self._loaded[block] = None
            self._condition.notify_all()

    def _read_block(self, block: int, slot: int):
        start = block * self.block_rows
        stop = min(start + self.block_rows, self.num_rows)
        if self.image_shape is None:
            return self._images()[start:stop]
        if self._buffers is None:
            with self._condition:
                if self._buffers is None:
                    shape = (self.cache_blocks, self.block_rows, *self.image_shape)
                    self._buffers = np.empty(shape, dtype=np.uint8)
        destination = self._buffers[slot, : stop - start]
        if self.chunk_map is not None:
            self.chunk_map.read_rows(start, destination)
        else:
            self._images().read_direct(destination, source_sel=np.s_[start:stop])
        return destination

    def _images(self):
        from pipeline.datasets.hdf5_reader import open_split

        with self._condition:
            if self._handle is None:
                self._handle = open_split(self.path)
            return self._handle["images"]

    # -- pickling (a worker process builds its own cache) ---------------------------------

    def __getstate__(self):
        keep = ("path", "image_shape", "block_rows", "ahead_rows", "cache_blocks", "labels")
        keep += ("num_rows",)
        return {name: self.__dict__[name] for name in keep} | {"chunk_map": self.chunk_map}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()
