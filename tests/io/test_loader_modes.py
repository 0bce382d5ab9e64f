"""HDF5DatasetGenerator's modes: storage, locality, sharding, position, augmentation, workers."""

import os
import pickle
import threading

import keras
import numpy as np
import pytest

from pipeline.datasets import hdf5_format
from pipeline.datasets.hdf5_writer import SplitWriter
from pipeline.datasets.images import encode_jpeg
from pipeline.errors import UserError
from pipeline.io import storage
from pipeline.io.epoch_order import Shard, windowed_block_order
from pipeline.io.hdf5_generator import HDF5DatasetGenerator
from pipeline.io.loader_options import LoaderOptions
from pipeline.io.storage import InMemoryStorage, OutOfCoreStorage, stored_image_bytes
from tests.conftest import numbered_images, write_split_file

NUM_SAMPLES = 301  # 9 batches of 32 and a partial one of 13; shards of 101, 100, 100
NUM_CLASSES = 7
BATCH_SIZE = 32
# 4x4 RGB images: 48 bytes. Chunks of 16 rows, blocks of 2 chunks, windows of 2 blocks.
IMAGE_BYTES = 4 * 4 * 3
CHUNK_ROWS, BLOCK_ROWS, SHUFFLE_BUFFER = 16, 32, 64
WINDOW_BLOCKS = SHUFFLE_BUFFER // BLOCK_ROWS
NUM_BLOCKS = -(-NUM_SAMPLES // BLOCK_ROWS)
PAD_AND_FLIP = [{"name": "pad_crop", "pad": 1}, {"name": "flip"}]


def numbered(num_samples, size=4):
    """Images holding their index in every pixel: R = index % 256, G = index // 256.

    B marks the position (16 * x + y), so flips and shifts show.
    """
    index = np.arange(num_samples)
    rows, columns = np.mgrid[0:size, 0:size]
    images = np.empty((num_samples, size, size, 3), np.uint8)
    images[..., 0] = (index % 256)[:, None, None]
    images[..., 1] = (index // 256)[:, None, None]
    images[..., 2] = (16 * columns + rows)[None]
    return images


def indices_of(images):
    """The sample index planted in a batch's images (read at the centre pixel)."""
    centre = images.shape[1] // 2
    pixels = images[:, centre, centre].astype(int)
    return pixels[:, 0] + 256 * pixels[:, 1]


def served(generator):
    """[(sample indices, labels)] of every batch left in the generator's epoch."""
    batches = []
    for position in range(len(generator)):
        images, labels = generator[position]
        assert images.dtype == np.uint8
        batches.append((indices_of(images).tolist(), labels.tolist()))
    return batches


def served_order(generator):
    return [index for indices, _ in served(generator) for index in indices]


@pytest.fixture
def small_blocks(monkeypatch):
    """Chunks of 16 rows and read blocks of 32 rows for 4x4 images, so a split has many blocks."""
    monkeypatch.setattr(hdf5_format, "TARGET_CHUNK_BYTES", CHUNK_ROWS * IMAGE_BYTES)
    monkeypatch.setattr(storage, "TARGET_BLOCK_BYTES", BLOCK_ROWS * IMAGE_BYTES)


@pytest.fixture
def split_path(tmp_path, small_blocks):
    labels = (np.arange(NUM_SAMPLES) % NUM_CLASSES).astype(np.int32)
    class_names = [f"class{label}" for label in range(NUM_CLASSES)]
    return write_split_file(tmp_path / "train.h5", numbered(NUM_SAMPLES), labels, class_names)


@pytest.fixture
def larger_split_path(tmp_path):
    """50 numbered 8x8 images (room for pad_crop to show), labels index % 7."""
    labels = (np.arange(50) % NUM_CLASSES).astype(np.int32)
    class_names = [f"class{label}" for label in range(NUM_CLASSES)]
    return write_split_file(tmp_path / "train8.h5", numbered(50, size=8), labels, class_names)


def make_generator(path, storage_mode, **options):
    options.setdefault("seed", 5)
    if storage_mode == "disk":
        options.setdefault("shuffle_buffer", SHUFFLE_BUFFER)
    batch_size = options.pop("batch_size", BATCH_SIZE)
    return HDF5DatasetGenerator(
        path, LoaderOptions(batch_size=batch_size, storage=storage_mode, **options)
    )


def test_the_fixture_has_many_blocks_in_disk_mode(split_path):
    generator = make_generator(split_path, "disk")
    assert isinstance(generator.storage, OutOfCoreStorage)
    assert generator.storage.block_rows == BLOCK_ROWS
    assert generator.order.disk_layout.window_blocks == WINDOW_BLOCKS
    assert 2 * WINDOW_BLOCKS <= generator.storage.cache_blocks < NUM_BLOCKS
    assert isinstance(make_generator(split_path, "memory").storage, InMemoryStorage)


# -- memory and disk storage ----------------------------------------------------------


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_every_sample_once_per_epoch_with_its_label(split_path, storage_mode):
    generator = make_generator(split_path, storage_mode)
    assert len(generator) == 10
    for epoch in range(3):
        generator.set_epoch(epoch)
        batches = served(generator)
        assert [len(indices) for indices, _ in batches] == [32] * 9 + [13]
        order = [index for indices, _ in batches for index in indices]
        assert sorted(order) == list(range(NUM_SAMPLES))
        for indices, labels in batches:
            assert labels == [index % NUM_CLASSES for index in indices]


def test_memory_and_disk_serve_the_same_samples(split_path):
    contents = {}
    for storage_mode in ("memory", "disk"):
        generator = make_generator(split_path, storage_mode)
        generator.set_epoch(1)
        by_index = {}
        for position in range(len(generator)):
            images, labels = generator[position]
            for image, label in zip(images, labels, strict=True):
                by_index[int(indices_of(image[None])[0])] = (image.tobytes(), int(label))
        contents[storage_mode] = by_index
    assert contents["memory"] == contents["disk"]
    assert sorted(contents["disk"]) == list(range(NUM_SAMPLES))


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_orders_differ_between_epochs_and_repeat_for_the_same_seed(split_path, storage_mode):
    first = make_generator(split_path, storage_mode, seed=11)
    second = make_generator(split_path, storage_mode, seed=11)
    orders = []
    for epoch in range(3):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        orders.append(served_order(first))
        assert served_order(second) == orders[-1]
    assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2]
    assert served_order(make_generator(split_path, storage_mode, seed=12)) != orders[0]


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_unshuffled_serves_file_order(split_path, storage_mode):
    generator = make_generator(split_path, storage_mode, shuffle=False)
    generator.set_epoch(3)
    assert served_order(generator) == list(range(NUM_SAMPLES))


def split_into_windows(order, num_samples, block_rows, window_blocks):
    """The blocks of each window of a windowed order, checking that windows do not mix.

    Walks the order and cuts a window as soon as it holds all samples of
    `window_blocks` blocks (or the order ends); fails if a window would need more.
    """

    def block_size(block):
        return min(num_samples, (block + 1) * block_rows) - block * block_rows

    windows, start = [], 0
    while start < len(order):
        blocks, needed = set(), 0
        for stop in range(start + 1, len(order) + 1):
            block = int(order[stop - 1]) // block_rows
            if block not in blocks:
                blocks.add(block)
                needed += block_size(block)
            assert len(blocks) <= window_blocks, f"window at {start} mixes more blocks"
            whole = stop - start == needed
            if whole and (len(blocks) == window_blocks or stop == len(order)):
                break
        assert whole, f"the window at {start} misses samples of its blocks"
        windows.append(blocks)
        start = stop
    return windows


@pytest.mark.parametrize(
    ("num_samples", "block_rows", "window_blocks"),
    [(301, 32, 2), (320, 32, 4), (301, 32, 1), (100, 7, 3), (50, 64, 2), (301, 32, 20)],
)
def test_windowed_block_order_is_a_permutation_of_whole_block_windows(
    num_samples, block_rows, window_blocks
):
    order = windowed_block_order(num_samples, block_rows, window_blocks, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(num_samples))
    windows = split_into_windows(order, num_samples, block_rows, window_blocks)
    num_blocks = -(-num_samples // block_rows)
    assert len(windows) == -(-num_blocks // window_blocks)
    assert all(len(blocks) == window_blocks for blocks in windows[:-1])
    assert sorted(block for blocks in windows for block in blocks) == list(range(num_blocks))


def test_windowed_block_order_shuffles_blocks_and_samples_and_repeats_per_rng():
    order = windowed_block_order(320, 32, 2, np.random.default_rng(2))
    again = windowed_block_order(320, 32, 2, np.random.default_rng(2))
    other = windowed_block_order(320, 32, 2, np.random.default_rng(3))
    np.testing.assert_array_equal(order, again)
    assert not np.array_equal(order, other)
    # Blocks come out of file order, and samples are mixed within each window.
    first_blocks = (order[::64] // 32).tolist()
    assert first_blocks != sorted(first_blocks)
    assert not all(np.all(np.diff(order[start : start + 64]) > 0) for start in range(0, 320, 64))


def test_disk_batches_stay_within_two_windows_of_blocks(split_path):
    generator = make_generator(split_path, "disk")
    for epoch in range(4):
        generator.set_epoch(epoch)
        order = generator.epoch_order(epoch)
        windows = split_into_windows(order, NUM_SAMPLES, BLOCK_ROWS, WINDOW_BLOCKS)
        window_of_block = {
            block: number for number, blocks in enumerate(windows) for block in blocks
        }
        for indices, _ in served(generator):
            blocks = {index // BLOCK_ROWS for index in indices}
            assert len(blocks) <= 2 * WINDOW_BLOCKS
            touched_windows = sorted({window_of_block[block] for block in blocks})
            assert touched_windows in (
                [touched_windows[0]],
                [touched_windows[0], touched_windows[0] + 1],
            )
        assert served_order(generator) == order.tolist()


def test_disk_mode_caches_at_most_cache_blocks_blocks(split_path):
    generator = make_generator(split_path, "disk")
    cache = generator.storage._slot_of  # blocks in memory or being read into it
    most_cached = 0
    for epoch in range(2):
        generator.set_epoch(epoch)
        for position in range(len(generator)):
            generator[position]
            assert len(cache) <= generator.storage.cache_blocks
            most_cached = max(most_cached, len(cache))
    # The cache filled up and evicted: the split's 10 blocks never were all in memory.
    assert most_cached == generator.storage.cache_blocks < NUM_BLOCKS


# -- auto storage -----------------------------------------------------------------------


def test_auto_keeps_a_small_split_in_memory(split_path):
    assert isinstance(make_generator(split_path, "auto").storage, InMemoryStorage)


def test_auto_reads_from_disk_when_memory_is_small(split_path, monkeypatch):
    monkeypatch.setattr(storage, "physical_memory_bytes", lambda: 1000)
    generator = make_generator(split_path, "auto")
    assert isinstance(generator.storage, OutOfCoreStorage)
    assert sorted(served_order(generator)) == list(range(NUM_SAMPLES))


def test_auto_keeps_in_memory_up_to_a_quarter_of_ram(split_path, monkeypatch):
    image_bytes = stored_image_bytes(split_path)
    monkeypatch.setattr(storage, "physical_memory_bytes", lambda: 4 * image_bytes)
    assert isinstance(make_generator(split_path, "auto").storage, InMemoryStorage)
    monkeypatch.setattr(storage, "physical_memory_bytes", lambda: 4 * image_bytes - 4)
    assert isinstance(make_generator(split_path, "auto").storage, OutOfCoreStorage)


# -- sharding --------------------------------------------------------------------------


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_shards_are_disjoint_cover_the_epoch_and_differ_in_size_by_one(split_path, storage_mode):
    shards = [
        make_generator(split_path, storage_mode, shard=Shard(index, 3), batch_size=16)
        for index in range(3)
    ]
    assert [shard.num_samples for shard in shards] == [101, 100, 100]
    assert [len(shard) for shard in shards] == [7, 7, 7]
    whole = make_generator(split_path, storage_mode, batch_size=16)
    previous = None
    for epoch in range(2):
        parts = []
        for shard in shards:
            shard.set_epoch(epoch)
            batches = served(shard)
            for indices, labels in batches:
                assert labels == [index % NUM_CLASSES for index in indices]
            parts.append([index for indices, _ in batches for index in indices])
        assert sorted(sum(parts, [])) == list(range(NUM_SAMPLES))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        # The shards split one epoch order of the whole split, in turn.
        assert sum(parts, []) == whole.epoch_order(epoch).tolist()
        assert parts != previous
        previous = parts


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_equal_shards_serve_the_same_number_of_batches_and_rotate_the_left_out(
    split_path, storage_mode
):
    """Workers that step together need equal shards: 301 samples in 3 shards of 100,
    the one left out changes from epoch to epoch."""
    shards = [
        make_generator(split_path, storage_mode, shard=Shard(index, 3, equal=True), batch_size=16)
        for index in range(3)
    ]
    assert [shard.num_samples for shard in shards] == [100, 100, 100]
    left_out = set()
    for epoch in range(3):
        parts = []
        for shard in shards:
            shard.set_epoch(epoch)
            batches = served(shard)
            assert [len(indices) for indices, _ in batches] == [16] * 6 + [4]
            parts.append([index for indices, _ in batches for index in indices])
        served_now = sum(parts, [])
        assert len(set(served_now)) == 300
        left_out |= set(range(NUM_SAMPLES)) - set(served_now)
    assert len(left_out) > 1


@pytest.mark.parametrize(("shard_index", "num_shards"), [(3, 3), (-1, 3), (0, 0)])
def test_bad_shard_is_a_user_error(split_path, shard_index, num_shards):
    with pytest.raises(UserError, match="shard index must be in"):
        make_generator(split_path, "memory", shard=Shard(shard_index, num_shards))


def test_batch_larger_than_the_shard_is_a_user_error(split_path):
    with pytest.raises(
        UserError,
        match=r"train\.h5: batch_size must be between 1 and the 100 samples in this shard",
    ):
        make_generator(split_path, "memory", shard=Shard(1, 3), batch_size=101)


# -- position and augmentation ---------------------------------------------------------------


def all_batches(generator):
    return [generator[position] for position in range(len(generator))]


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
@pytest.mark.parametrize("start_batch", [0, 1, 4, 6])
def test_resuming_mid_epoch_serves_the_rest_of_that_epoch_exactly(
    larger_split_path, storage_mode, start_batch
):
    uninterrupted = make_generator(
        larger_split_path, storage_mode, batch_size=8, augment=PAD_AND_FLIP
    )
    uninterrupted.set_epoch(2)
    expected = all_batches(uninterrupted)
    assert len(expected) == 7

    resumed = make_generator(larger_split_path, storage_mode, batch_size=8, augment=PAD_AND_FLIP)
    resumed.set_epoch(2, start_batch=start_batch)
    assert len(resumed) == 7 - start_batch
    for (images, labels), (expected_images, expected_labels) in zip(
        all_batches(resumed), expected[start_batch:], strict=True
    ):
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
    with pytest.raises(IndexError):
        resumed[len(resumed)]
    # The next epoch starts from its first batch again.
    resumed.set_epoch(3)
    assert len(resumed) == 7


def test_augmentation_really_changes_the_images(larger_split_path):
    plain = make_generator(larger_split_path, "memory", batch_size=50, shuffle=False)
    augmented = make_generator(
        larger_split_path, "memory", batch_size=50, shuffle=False, augment=PAD_AND_FLIP
    )
    plain_images, augmented_images = plain[0][0], augmented[0][0]
    changed = [
        not np.array_equal(before, after)
        for before, after in zip(plain_images, augmented_images, strict=True)
    ]
    assert sum(changed) > 25
    np.testing.assert_array_equal(indices_of(augmented_images), np.arange(50))


@pytest.mark.parametrize("start_batch", [7, -1])
def test_start_batch_outside_the_epoch_is_refused(larger_split_path, start_batch):
    generator = make_generator(larger_split_path, "memory", batch_size=8)
    with pytest.raises(ValueError, match="start_batch must be in"):
        generator.set_epoch(0, start_batch=start_batch)


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_augmentation_repeats_for_the_same_seed_and_not_for_another(
    larger_split_path, storage_mode
):
    def batches(seed, reverse=False):
        generator = make_generator(
            larger_split_path,
            storage_mode,
            batch_size=8,
            shuffle=False,
            augment=PAD_AND_FLIP,
            seed=seed,
        )
        generator.set_epoch(1)
        positions = range(len(generator))
        read = {
            position: generator[position]
            for position in (reversed(positions) if reverse else positions)
        }
        return np.concatenate([read[position][0] for position in positions])

    first = batches(seed=1)
    np.testing.assert_array_equal(first, batches(seed=1))
    # Batches do not depend on the order in which they are read (as with workers).
    np.testing.assert_array_equal(first, batches(seed=1, reverse=True))
    assert not np.array_equal(first, batches(seed=2))


# -- workers and pickling ---------------------------------------------------------------------


class RecordingGenerator(HDF5DatasetGenerator):
    """Leaves a file named after the process and thread that loaded each batch."""

    def __init__(self, db_path, options, *, record_dir) -> None:
        super().__init__(db_path, options)
        self.record_dir = record_dir

    def __getitem__(self, index):
        batch = super().__getitem__(index)
        (self.record_dir / f"{os.getpid()}-{threading.get_ident()}-{index}").touch()
        return batch


class BatchCounter(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.batches_per_epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self.batches_per_epoch.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.batches_per_epoch[-1] += 1


@pytest.mark.parametrize("use_multiprocessing", [False, True], ids=["threads", "processes"])
def test_keras_fit_with_two_workers(split_path, tmp_path, use_multiprocessing):
    record_dir = tmp_path / "loaded"
    record_dir.mkdir()
    generator = RecordingGenerator(
        split_path,
        LoaderOptions(
            batch_size=64,
            storage="disk",
            shuffle_buffer=SHUFFLE_BUFFER,
            augment=[{"name": "flip"}],
            workers=2,
            use_multiprocessing=use_multiprocessing,
        ),
        record_dir=record_dir,
    )
    inputs = keras.Input((4, 4, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, activation="softmax")(pooled))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    counter = BatchCounter()
    history = model.fit(generator, epochs=2, verbose=0, callbacks=[counter])
    assert counter.batches_per_epoch == [5, 5]
    assert len(history.history["loss"]) == 2 and all(np.isfinite(history.history["loss"]))
    loaders = {tuple(map(int, path.name.split("-")[:2])) for path in record_dir.iterdir()}
    processes = {pid for pid, _ in loaders} - {os.getpid()}
    if use_multiprocessing:
        assert processes, "no batch was loaded in a worker process"
    else:
        assert not processes and len(loaders) > 1, "batches were not loaded in worker threads"


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_unpickled_generator_serves_the_same_batches(larger_split_path, storage_mode):
    generator = make_generator(larger_split_path, storage_mode, batch_size=8, augment=PAD_AND_FLIP)
    generator.set_epoch(1)
    original = all_batches(generator)  # the file is open and the caches are full
    copy = pickle.loads(pickle.dumps(generator))
    if storage_mode == "memory":
        assert copy.storage._images is None  # the images are read again, not shipped
    for (images, labels), (copied_images, copied_labels) in zip(
        original, all_batches(copy), strict=True
    ):
        np.testing.assert_array_equal(copied_images, images)
        np.testing.assert_array_equal(copied_labels, labels)
    copy.set_epoch(2)
    generator.set_epoch(2)
    np.testing.assert_array_equal(copy[3][0], generator[3][0])


# -- JPEG splits and image sizes ---------------------------------------------------------


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_jpeg_split_with_scale_augmentation_gives_batches_of_image_size(tmp_path, storage_mode):
    rng = np.random.default_rng(0)
    sizes = [
        (20, 30),
        (24, 24),
        (40, 22),
        (31, 45),
        (22, 20),
        (28, 28),
        (50, 25),
        (21, 33),
        (26, 39),
    ]
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]
    path = tmp_path / "train.h5"
    with SplitWriter(
        path, class_names=["a", "b", "c"], split="train", source="t", encoding="jpeg"
    ) as writer:
        writer.add([encode_jpeg(image) for image in images], np.arange(9) % 3)
        writer.finish((0, 0, 0), (1, 1, 1))
    generator = HDF5DatasetGenerator(
        path,
        LoaderOptions(
            batch_size=4,
            storage=storage_mode,
            image_size=16,
            seed=1,
            augment=[{"name": "scale", "min_side": 20, "max_side": 28, "size": 16}],
        ),
    )
    assert generator.image_shape == (16, 16, 3)
    batches = all_batches(generator)
    assert [images.shape for images, _ in batches] == [(4, 16, 16, 3)] * 2 + [(1, 16, 16, 3)]
    assert all(images.dtype == np.uint8 for images, _ in batches)
    assert sorted(sum((labels.tolist() for _, labels in batches), [])) == sorted(
        (np.arange(9) % 3).tolist()
    )


def position_split(tmp_path, height, width, count=6):
    """Raw images whose pixel (y, x) holds (y * 10, x * 10, sample)."""
    rows, columns = np.mgrid[0:height, 0:width]
    images = np.empty((count, height, width, 3), np.uint8)
    images[..., 0] = rows * 10
    images[..., 1] = columns * 10
    images[..., 2] = np.arange(count)[:, None, None]
    path = tmp_path / f"train_{height}x{width}.h5"
    return write_split_file(path, images, np.zeros(count, np.int32), ["a"]), images


@pytest.mark.parametrize(
    ("height", "width"),
    [
        (12, 12),
        (13, 12),
        (12, 8),
        (8, 12),
    ],
)
def test_raw_images_larger_than_image_size_are_centre_cropped(tmp_path, height, width):
    path, stored = position_split(tmp_path, height, width)
    top, left = (height - 8) // 2, (width - 8) // 2
    for augment in (None, [{"name": "flip", "probability": 1.0}]):
        generator = HDF5DatasetGenerator(
            path, LoaderOptions(batch_size=6, shuffle=False, image_size=8, augment=augment)
        )
        assert generator.image_shape == (8, 8, 3)
        images, _ = generator[0]
        assert images.shape == (6, 8, 8, 3)
        source = stored if augment is None else stored[:, :, ::-1]
        np.testing.assert_array_equal(images, source[:, top : top + 8, left : left + 8])


def test_an_augmentation_that_crops_to_image_size_is_not_centre_cropped_again(tmp_path):
    path, stored = position_split(tmp_path, 12, 12, count=40)
    generator = HDF5DatasetGenerator(
        path,
        LoaderOptions(
            batch_size=40, shuffle=False, image_size=8, augment=[{"name": "random_crop", "size": 8}]
        ),
    )
    images, _ = generator[0]
    assert images.shape == (40, 8, 8, 3)
    origins = {(int(image[0, 0, 0]) // 10, int(image[0, 0, 1]) // 10) for image in images}
    assert len(origins) > 5 and origins != {(2, 2)}


@pytest.mark.parametrize(("height", "width", "image_size"), [(12, 12, 13), (8, 12, 10)])
def test_image_size_larger_than_the_stored_images_is_a_user_error(
    tmp_path, height, width, image_size
):
    path, _ = position_split(tmp_path, height, width)
    with pytest.raises(UserError, match=f"data.image_size {image_size} is larger"):
        HDF5DatasetGenerator(path, LoaderOptions(batch_size=2, image_size=image_size))


# -- bad input ------------------------------------------------------------------------------


def test_unknown_storage_is_a_user_error(split_path):
    with pytest.raises(UserError, match="storage must be one of"):
        make_generator(split_path, "cloud")


@pytest.mark.parametrize("batch_size", [0, NUM_SAMPLES + 1])
def test_bad_batch_size_is_a_user_error_on_disk_too(split_path, batch_size):
    with pytest.raises(UserError, match=f"batch_size must be between 1 and the {NUM_SAMPLES}"):
        make_generator(split_path, "disk", batch_size=batch_size)


def test_disk_batches_larger_than_the_shuffle_window_are_served_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(hdf5_format, "TARGET_CHUNK_BYTES", 16 * 4 * 4 * 3)
    monkeypatch.setattr(storage, "TARGET_BLOCK_BYTES", 16 * 4 * 4 * 3)
    images = numbered_images(301)
    path = write_split_file(tmp_path / "train.h5", images, np.arange(301) % 7, list("abcdefg"))
    # Windows of one 16-row block; batches of 100 span up to eight windows.
    generator = HDF5DatasetGenerator(
        path, LoaderOptions(batch_size=100, storage="disk", shuffle_buffer=16, seed=4)
    )
    served = np.concatenate([generator[index][0][:, 0, 0, 0] for index in range(len(generator))])
    assert sorted(served.tolist()) == sorted((np.arange(301) % 256).tolist())


class ServedBatches(HDF5DatasetGenerator):
    """Records the samples of every batch it serves, by (epoch, batch)."""

    def __init__(self, db_path, options) -> None:
        super().__init__(db_path, options)
        self.batches = {}

    def __getitem__(self, index):
        images, labels = super().__getitem__(index)
        self.batches[(self.epoch, self.start_batch + index)] = frozenset(indices_of(images))
        return images, labels


@pytest.mark.parametrize("storage_mode", ["memory", "disk"])
def test_plain_keras_fit_serves_new_batch_compositions_every_epoch(split_path, storage_mode):
    # The loader on its own, as Keras' PyDataset documentation teaches: no project callback.
    options = {"shuffle_buffer": SHUFFLE_BUFFER} if storage_mode == "disk" else {}
    generator = ServedBatches(
        split_path, LoaderOptions(batch_size=64, storage=storage_mode, seed=3, **options)
    )
    inputs = keras.Input((4, 4, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, activation="softmax")(pooled))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(generator, epochs=3, verbose=0)
    # Keras looks at a batch or two before training (and moves the generator on an epoch
    # as it starts a fit): the three epochs trained are those served whole.
    tags = sorted({epoch for epoch, _batch in generator.batches})
    whole = [t for t in tags if all((t, b) in generator.batches for b in range(5))]
    assert len(whole) == 3 and generator.batches_per_epoch == 5
    epochs = [[generator.batches[(epoch, batch)] for batch in range(5)] for epoch in whole]
    for batches in epochs:  # every sample once per epoch
        assert sorted(index for batch in batches for index in batch) == list(range(NUM_SAMPLES))
    compositions = [set(batches) for batches in epochs]
    assert compositions[0] != compositions[1] != compositions[2] != compositions[0]


def test_a_crop_smaller_than_the_served_images_is_a_one_line_error_naming_both(
    tmp_path, larger_split_path
):
    crop = [{"name": "random_crop", "size": 6}, {"name": "flip"}]
    with pytest.raises(UserError, match="a crop of 6 pixels, but the split serves 8x8 images"):
        HDF5DatasetGenerator(larger_split_path, LoaderOptions(batch_size=10, augment=crop))
    # With data.image_size at the crop's size, train and validation batches agree.
    train = HDF5DatasetGenerator(
        larger_split_path, LoaderOptions(batch_size=10, augment=crop, image_size=6)
    )
    val = HDF5DatasetGenerator(
        larger_split_path, LoaderOptions(batch_size=10, shuffle=False, image_size=6)
    )
    assert train[0][0].shape == val[0][0].shape == (10, 6, 6, 3)
    # JPEG-stored: decoded to data.image_size, so the crop must be made while decoding.
    path = tmp_path / "jpeg.h5"
    with SplitWriter(path, class_names=["a", "b"], split="train", source="t", encoding="jpeg") as w:
        w.add([encode_jpeg(image) for image in numbered(12, size=10)], np.arange(12) % 2)
        w.finish((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    with pytest.raises(UserError, match="JPEG images are decoded to data.image_size 8x8"):
        HDF5DatasetGenerator(path, LoaderOptions(batch_size=4, augment=crop, image_size=8))
    scale = [{"name": "scale", "min_side": 8, "max_side": 8, "size": 6}, {"name": "flip"}]
    assert HDF5DatasetGenerator(path, LoaderOptions(batch_size=4, augment=scale, image_size=6))[0][
        0
    ].shape == (4, 6, 6, 3)
