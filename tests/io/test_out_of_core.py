"""Out-of-core reads: direct chunk reads against h5py, hostile chunk tables, read-ahead."""

import threading

import h5py
import numpy as np
import pytest

from pipeline.datasets import hdf5_format
from pipeline.errors import UserError
from pipeline.io import out_of_core as out_of_core_module
from pipeline.io import storage
from pipeline.io.chunk_map import ChunkMap, _checked_offsets, _direct_layout
from pipeline.io.hdf5_generator import HDF5DatasetGenerator
from pipeline.io.loader_options import LoaderOptions
from pipeline.io.out_of_core import OutOfCoreStorage, ReadPlan
from tests.conftest import write_split_file

NUM_SAMPLES = 301  # the last chunk holds 13 rows
CHUNK_ROWS, BLOCK_ROWS, WINDOW_ROWS = 16, 32, 64
IMAGE_BYTES = 4 * 4 * 3
NUM_BLOCKS = -(-NUM_SAMPLES // BLOCK_ROWS)


@pytest.fixture
def split_path(tmp_path, monkeypatch):
    """301 random 4x4 images in chunks of 16 rows, read in blocks of 32 rows."""
    monkeypatch.setattr(hdf5_format, "TARGET_CHUNK_BYTES", CHUNK_ROWS * IMAGE_BYTES)
    monkeypatch.setattr(storage, "TARGET_BLOCK_BYTES", BLOCK_ROWS * IMAGE_BYTES)
    images = np.random.default_rng(3).integers(0, 256, (NUM_SAMPLES, 4, 4, 3), dtype=np.uint8)
    labels = (np.arange(NUM_SAMPLES) % 5).astype(np.int32)
    return write_split_file(tmp_path / "train.h5", images, labels, list("abcde"))


def stored_images(path):
    with h5py.File(path, "r") as handle:
        return handle["images"][()]


def disk_generator(path, **options):
    options.setdefault("shuffle_buffer", WINDOW_ROWS)
    options.setdefault("batch_size", 32)
    return HDF5DatasetGenerator(path, LoaderOptions(storage="disk", seed=4, **options))


# -- direct chunk reads ----------------------------------------------------------------


def test_direct_reads_give_every_row_as_h5py_does(split_path):
    chunk_map = ChunkMap.of(split_path)
    assert chunk_map is not None
    expected = stored_images(split_path)
    for start in range(0, NUM_SAMPLES, BLOCK_ROWS):
        rows = np.empty((min(BLOCK_ROWS, NUM_SAMPLES - start), 4, 4, 3), np.uint8)
        chunk_map.read_rows(start, rows)
        np.testing.assert_array_equal(rows, expected[start : start + len(rows)])


def test_disk_storage_reads_directly_and_serves_the_same_batches_as_memory(split_path):
    from_disk = disk_generator(split_path, shuffle=False)
    in_memory = HDF5DatasetGenerator(
        split_path, LoaderOptions(batch_size=32, storage="memory", shuffle=False)
    )
    assert from_disk.storage.chunk_map is not None
    for position in range(len(from_disk)):
        np.testing.assert_array_equal(from_disk[position][0], in_memory[position][0])


def test_compressed_or_user_block_files_are_read_through_h5py(tmp_path):
    images = np.zeros((40, 4, 4, 3), np.uint8)
    with h5py.File(tmp_path / "gzip.h5", "w") as handle:
        dataset = handle.create_dataset("images", data=images, chunks=(8, 4, 4, 3), compression=4)
        assert _direct_layout(handle, dataset) is None
    with h5py.File(tmp_path / "userblock.h5", "w", userblock_size=512) as handle:
        dataset = handle.create_dataset("images", data=images, chunks=(8, 4, 4, 3))
        assert _direct_layout(handle, dataset) is None
    with h5py.File(tmp_path / "partial_rows.h5", "w") as handle:
        dataset = handle.create_dataset("images", data=images, chunks=(8, 2, 4, 3))
        assert _direct_layout(handle, dataset) is None
    with h5py.File(tmp_path / "plain.h5", "w") as handle:
        dataset = handle.create_dataset("images", data=images, chunks=(8, 4, 4, 3))
        assert _direct_layout(handle, dataset) == (8, 48)


CHUNK = 8 * 48  # bytes of a chunk of 8 rows of 48 bytes
GOOD = [(0, 0, 1000, CHUNK), (8, 0, 2000, CHUNK), (16, 0, 3000, CHUNK)]


@pytest.mark.parametrize(
    "table",
    [
        pytest.param(GOOD[:2], id="a chunk missing"),
        pytest.param(GOOD + [(8, 0, 4000, CHUNK)], id="a chunk twice"),
        pytest.param([GOOD[0], (4, 0, 2000, CHUNK), GOOD[2]], id="a chunk off the grid"),
        pytest.param(GOOD + [(24, 0, 5000, CHUNK)], id="a chunk past the rows"),
        pytest.param([GOOD[0], (8, 1, 2000, CHUNK), GOOD[2]], id="a filter applied"),
        pytest.param([GOOD[0], (8, 0, 2000, CHUNK - 1), GOOD[2]], id="a short chunk"),
        pytest.param([GOOD[0], (8, 0, -5, CHUNK), GOOD[2]], id="a negative offset"),
        pytest.param([GOOD[0], GOOD[1], (16, 0, 9800, CHUNK)], id="a chunk past the file"),
        pytest.param([GOOD[0], (8, 0, None, CHUNK), GOOD[2]], id="an undefined address"),
    ],
)
def test_a_forged_chunk_table_is_not_trusted(table):
    # 20 rows in chunks of 8: three chunks, in a file of 10000 bytes.
    assert _checked_offsets(table, 20, 8, 48, 10000) is None


def test_a_sound_chunk_table_gives_the_offsets_in_row_order():
    shuffled = [GOOD[2], GOOD[0], GOOD[1]]
    assert _checked_offsets(shuffled, 20, 8, 48, 10000).tolist() == [1000, 2000, 3000]


def test_a_file_truncated_during_the_run_is_one_line(split_path):
    generator = disk_generator(split_path, shuffle=False)
    generator[0]
    size = split_path.stat().st_size
    with open(split_path, "r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(UserError, match="truncated or replaced") as raised:
        generator[len(generator) - 1]
    assert "\n" not in str(raised.value)


# -- read-ahead ------------------------------------------------------------------------


def test_read_plan_knows_first_and_last_use_of_each_block():
    order = np.array([40, 3, 41, 70, 5, 71])  # blocks of 32 rows: 1, 0, 1, 2, 0, 2
    plan = ReadPlan(order, 32, ahead_rows=2, batch_size=2)
    assert plan.upcoming(0).tolist() == [1, 0]
    assert plan.upcoming(2).tolist() == [2]
    assert plan.upcoming(4).tolist() == []
    assert plan.done_before(1, 3) and not plan.done_before(0, 4)
    assert plan.done_before(7, 0)  # a block the epoch never uses


def count_block_reads(reader):
    """The blocks a generator's (or a storage's) storage reads from now on, in order."""
    out_of_core = getattr(reader, "storage", reader)
    reads = []
    original = out_of_core._read_block

    def counted(block, slot):
        reads.append(block)
        return original(block, slot)

    out_of_core._read_block = counted
    return reads


def wait_for_reads(storage_):
    for future in list(storage_._loading.values()):
        future.result()


def test_the_next_window_is_read_before_its_first_batch(split_path):
    generator = disk_generator(split_path)
    reads = count_block_reads(generator)
    order = generator.epoch_order(0)
    next_window_blocks = set((order[WINDOW_ROWS : 2 * WINDOW_ROWS] // BLOCK_ROWS).tolist())
    generator[0]
    generator[1]  # the last batch of the first window
    wait_for_reads(generator.storage)
    assert next_window_blocks <= set(reads)


@pytest.mark.parametrize("shuffle", [True, False])
def test_each_block_is_read_once_per_epoch(split_path, shuffle):
    # The cache holds what a batch spans plus one window: the read-ahead never
    # replaces a block a coming batch still needs.
    generator = disk_generator(split_path, shuffle=shuffle)
    reads = count_block_reads(generator)
    expected = stored_images(split_path)
    for epoch in range(2):
        generator.set_epoch(epoch)
        order = generator.epoch_order(epoch)
        for position in range(len(generator)):
            images, _ = generator[position]
            np.testing.assert_array_equal(images, expected[order[position * 32 :][:32]])
        wait_for_reads(generator.storage)
        assert len(reads) == len(set(reads))  # no block twice
        if epoch == 0:
            assert sorted(reads) == list(range(NUM_BLOCKS))
        reads.clear()


def test_a_block_still_needed_is_kept_over_blocks_the_epoch_is_done_with(split_path, monkeypatch):
    # Blocks 0, 1, 2, 3, then 0 again, one row a batch, in a cache of 3 blocks: least
    # recently used would evict block 0, which the last batch needs. (No slack for
    # loader threads on earlier batches: this test serves one batch at a time.)
    monkeypatch.setattr(out_of_core_module, "DONE_AFTER_BATCHES", 0)
    out_of_core = OutOfCoreStorage(
        split_path, image_shape=(4, 4, 3), block_rows=BLOCK_ROWS, ahead_rows=4, cache_blocks=3
    )
    reads = count_block_reads(out_of_core)
    order = np.array([0, 32, 64, 96, 1])
    plan = ReadPlan(order, BLOCK_ROWS, ahead_rows=4, batch_size=1)
    for position, index in enumerate(order):
        out_of_core.read(np.array([index]), plan, position)
        wait_for_reads(out_of_core)
    assert sorted(reads) == [0, 1, 2, 3]


def test_threads_serving_batches_at_once_get_the_serial_batches(split_path):
    serial = [batch[0] for batch in (disk_generator(split_path)[i] for i in range(10))]
    generator = disk_generator(split_path)
    results, errors = {}, []

    def serve(positions):
        try:
            for position in positions:
                results[position] = generator[position][0]
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=serve, args=(range(k, 10, 4),)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for position in range(10):
        np.testing.assert_array_equal(results[position], serial[position])


def test_a_failed_read_frees_its_slot_and_the_next_try_reads_again(split_path):
    generator = disk_generator(split_path, shuffle=False)
    out_of_core = generator.storage
    assert isinstance(out_of_core, OutOfCoreStorage)
    original, failures = out_of_core._read_block, [1]

    def flaky(block, slot):
        if failures:
            failures.pop()
            raise OSError("disk hiccup")
        return original(block, slot)

    out_of_core._read_block = flaky
    with pytest.raises(OSError, match="hiccup"):
        out_of_core.read(np.arange(5))
    assert not out_of_core._loading and not any(out_of_core._pins.values())
    np.testing.assert_array_equal(out_of_core.read(np.arange(5)), stored_images(split_path)[:5])
