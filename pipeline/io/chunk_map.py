"""ChunkMap: where each chunk of a split's raw images lies in its file, for direct reads.

h5py serialises every call behind one lock, so reads through it never overlap. An
uncompressed chunk is the images' bytes as they are, so a block of whole chunks can
be read with `os.preadv` straight into its buffer: without the lock, several reads
in flight at once (the disk of bench/scale.py serves four 8 MiB reads at once about
1.6x faster than one after another).

The table comes from the file, so it is checked before it is trusted: every chunk
exactly once, unfiltered, of the full size and inside the file, and two rows read
both ways must agree. A file that fails any check is read through h5py, as before.
"""

import os

import numpy as np

from pipeline.datasets.hdf5_reader import open_split
from pipeline.errors import UserError


class ChunkMap:
    """The byte offset of every chunk of the `images` dataset of one split file."""

    def __init__(self, path, num_rows: int, chunk_rows: int, row_bytes: int, offsets) -> None:
        self.path = path
        self.num_rows = num_rows
        self.chunk_rows = chunk_rows
        self.row_bytes = row_bytes
        self.offsets = offsets  # int64, one per chunk, in row order
        self._descriptor = None
        self._pid = None

    @classmethod
    def of(cls, path) -> "ChunkMap | None":
        """The map of `path`, or None when its images cannot be read directly."""
        with open_split(path) as handle:
            images = handle["images"]
            layout = _direct_layout(handle, images)
            if layout is None:
                return None
            chunk_rows, row_bytes = layout
            table = _chunk_table(images)
            offsets = _checked_offsets(
                table, images.shape[0], chunk_rows, row_bytes, os.path.getsize(path)
            )
            if offsets is None:
                return None
            chunk_map = cls(path, images.shape[0], chunk_rows, row_bytes, offsets)
            return chunk_map if chunk_map._agrees_with(images) else None

    def read_rows(self, start: int, destination: np.ndarray) -> None:
        """Fill `destination` (C-contiguous uint8 rows) with the rows from `start` on;
        `start` is the first row of a chunk."""
        if start % self.chunk_rows:
            raise ValueError(f"row {start} does not start a chunk of {self.chunk_rows} rows")
        flat = destination.reshape(-1).view(np.uint8)
        rows = len(destination)
        first_chunk = start // self.chunk_rows
        chunk_bytes = self.chunk_rows * self.row_bytes
        done = 0
        while done < rows * self.row_bytes:
            chunk = first_chunk + done // chunk_bytes
            offset = int(self.offsets[chunk])
            # Consecutive chunks that lie back to back in the file: one read.
            span = chunk_bytes
            while (
                done + span < rows * self.row_bytes
                and int(self.offsets[chunk + span // chunk_bytes]) == offset + span
            ):
                span += chunk_bytes
            span = min(span, rows * self.row_bytes - done)
            self._read_exactly(flat[done : done + span], offset)
            done += span

    def _read_exactly(self, target: np.ndarray, offset: int) -> None:
        view = memoryview(target)
        while len(view):
            count = os.preadv(self._file(), [view], offset)
            if count <= 0:
                raise UserError(
                    f"{self.path} ended at byte {offset} while reading its images: the "
                    f"file was truncated or replaced during the run; rebuild it"
                )
            view, offset = view[count:], offset + count

    def _file(self) -> int:
        """This process's descriptor (a forked worker opens its own)."""
        if self._pid != os.getpid():
            self._descriptor = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._pid = os.getpid()
        return self._descriptor

    def _agrees_with(self, images) -> bool:
        """Whether the first and the last row read directly equal h5py's (a table whose
        addresses are off, e.g. behind a user block, fails here)."""
        shape = images.shape[1:]
        for row in (0, self.num_rows - 1):
            first = row - row % self.chunk_rows
            direct = np.empty((row - first + 1, *shape), np.uint8)
            try:
                self.read_rows(first, direct)
            except UserError:
                return False
            if not np.array_equal(direct[-1], images[row]):
                return False
        return True

    def __del__(self):
        # The descriptor of this process only: a forked child's copy is its parent's.
        if self._descriptor is not None and self._pid == os.getpid():
            os.close(self._descriptor)
            self._descriptor = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_descriptor"] = state["_pid"] = None
        return state


def _direct_layout(handle, images) -> tuple[int, int] | None:
    """(rows per chunk, bytes per row) when the images are plain uint8 chunks of whole
    rows with no filter; None otherwise."""
    import h5py

    if handle.userblock_size or images.dtype != np.uint8 or images.ndim != 4:
        return None
    if images.chunks is None or tuple(images.chunks[1:]) != tuple(images.shape[1:]):
        return None
    plist = images.id.get_create_plist()
    if plist.get_layout() != h5py.h5d.CHUNKED or plist.get_nfilters() != 0:
        return None
    if images.shape[0] == 0:
        return None
    return images.chunks[0], int(np.prod(images.shape[1:]))


def _chunk_table(images) -> list[tuple[int, int, int, int]]:
    """[(first row, filter mask, byte offset, stored size)] of every stored chunk."""
    table = []

    def add(info) -> None:
        table.append((info.chunk_offset[0], info.filter_mask, info.byte_offset, info.size))

    if hasattr(images.id, "chunk_iter"):
        images.id.chunk_iter(add)
    else:  # HDF5 before 1.14: one call per chunk
        for index in range(images.id.get_num_chunks()):
            add(images.id.get_chunk_info(index))
    return table


def _checked_offsets(table, num_rows, chunk_rows, row_bytes, file_size) -> np.ndarray | None:
    """The byte offset of each chunk in row order, or None when the table is not
    exactly one whole, unfiltered chunk inside the file for every run of rows."""
    num_chunks = -(-num_rows // chunk_rows)
    chunk_bytes = chunk_rows * row_bytes
    offsets = np.full(num_chunks, -1, np.int64)
    for first_row, filter_mask, byte_offset, size in table:
        if first_row % chunk_rows or not 0 <= first_row < num_rows:
            return None
        chunk = first_row // chunk_rows
        if filter_mask or size != chunk_bytes or offsets[chunk] != -1:
            return None
        if byte_offset is None or not 0 <= byte_offset <= file_size - chunk_bytes:
            return None
        offsets[chunk] = byte_offset
    return None if (offsets < 0).any() else offsets
