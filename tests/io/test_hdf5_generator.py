import dataclasses

import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.io import HDF5DatasetGenerator, LoaderOptions
from pipeline.io.epoch_order import Shard


def served_indices(generator):
    """The sample numbers (planted in the pixels) of every batch, in order."""
    return [
        batch_images[:, 0, 0, 0].astype(int).tolist()
        for batch_images, _ in (generator[index] for index in range(len(generator)))
    ]


@pytest.mark.parametrize("batch_size", [1, 5, 8, 36, 37])
def test_every_sample_exactly_once_per_epoch_last_partial_batch_kept(numbered_split, batch_size):
    generator = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=batch_size, seed=3))
    assert len(generator) == -(-37 // batch_size)
    for epoch in range(3):
        generator.set_epoch(epoch)
        batches = served_indices(generator)
        assert sorted(sum(batches, [])) == list(range(37))
        assert all(len(batch) == batch_size for batch in batches[:-1])
        assert len(batches[-1]) == 37 - batch_size * (len(batches) - 1)


def test_labels_travel_with_their_images(numbered_split):
    generator = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=8, seed=1))
    for index in range(len(generator)):
        images, labels = generator[index]
        np.testing.assert_array_equal(labels, images[:, 0, 0, 0] % 3)
        assert images.dtype == np.uint8


def test_epochs_get_different_orders_that_repeat_in_every_run(numbered_split):
    first = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=8, seed=7))
    second = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=8, seed=7))
    orders = []
    for epoch in range(3):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        orders.append(served_indices(first))
        assert served_indices(second) == orders[-1]
    assert orders[0] != orders[1] != orders[2]
    other_seed = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=8, seed=8))
    assert served_indices(other_seed) != orders[0]


def test_resuming_at_an_epoch_serves_that_epochs_batches(numbered_split):
    uninterrupted = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=8, seed=2))
    uninterrupted.set_epoch(4)
    resumed = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=8, seed=2))
    resumed.set_epoch(4)
    assert served_indices(resumed) == served_indices(uninterrupted)


def test_unshuffled_generator_serves_file_order(numbered_split):
    generator = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=10, shuffle=False))
    generator.set_epoch(5)
    assert sum(served_indices(generator), []) == list(range(37))


def test_index_past_the_end_raises_index_error(numbered_split):
    generator = HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=10))
    with pytest.raises(IndexError):
        generator[4]


@pytest.mark.parametrize("batch_size", [0, -1, 38])
def test_bad_batch_size_is_a_user_error(numbered_split, batch_size):
    with pytest.raises(UserError, match="batch_size must be between 1 and the 37 samples"):
        HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=batch_size))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="build_dataset.py"):
        HDF5DatasetGenerator(tmp_path / "train.h5", LoaderOptions(batch_size=8))


def test_jpeg_encoded_split_is_decoded_to_the_requested_size(tmp_path):
    from pipeline.datasets.hdf5_writer import SplitWriter
    from pipeline.datasets.images import encode_jpeg

    colours = [(200, 30, 10), (10, 180, 40), (20, 40, 220)]
    # Images of different sizes, each one colour: decoding must keep R, G, B in place.
    images = [np.full((20 + 4 * i, 30, 3), colour, np.uint8) for i, colour in enumerate(colours)]
    path = tmp_path / "train.h5"
    with SplitWriter(
        path, class_names=["r", "g", "b"], split="train", source="t", encoding="jpeg"
    ) as writer:
        writer.add([encode_jpeg(image) for image in images], np.arange(3))
        writer.finish((0, 0, 0), (1, 1, 1))
    with pytest.raises(UserError, match="data.image_size"):
        HDF5DatasetGenerator(path, LoaderOptions(batch_size=2))
    generator = HDF5DatasetGenerator(
        path, LoaderOptions(batch_size=3, shuffle=False, image_size=16)
    )
    assert generator.image_shape == (16, 16, 3)
    batch, labels = generator[0]
    assert batch.shape == (3, 16, 16, 3) and batch.dtype == np.uint8
    for image, label in zip(batch, labels, strict=True):
        np.testing.assert_allclose(image[8, 8], colours[label], atol=6)


def test_batch_multiple_cuts_the_last_batch_to_a_multiple_of_the_devices(numbered_split):
    generator = HDF5DatasetGenerator(
        numbered_split, LoaderOptions(batch_size=8, seed=1, batch_multiple=4)
    )
    # 37 samples in batches of 8: the last batch of 5 is cut to 4.
    assert generator.samples_per_epoch == 36 and len(generator) == 5
    for epoch in range(2):
        generator.set_epoch(epoch)
        sizes = [len(generator[index][1]) for index in range(len(generator))]
        assert sizes == [8, 8, 8, 8, 4]
    with pytest.raises(UserError, match="multiple of the 3 devices"):
        HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=8, batch_multiple=3))


# -- LoaderOptions ----------------------------------------------------------------------


def test_loader_options_are_frozen_and_default_as_documented():
    options = LoaderOptions(batch_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 16
    assert (options.shuffle, options.seed, options.storage, options.batch_multiple) == (
        True,
        0,
        "auto",
        1,
    )
    assert options.shard == Shard() and (options.workers, options.use_multiprocessing) == (1, False)
    with pytest.raises(TypeError):
        LoaderOptions()  # batch_size has no default


def shuffled_order(seed, epoch):
    """The order a memory-stored split of the 37 numbered samples gets: a permutation drawn
    from (seed, stream 0, epoch)."""
    return np.random.default_rng([seed, 0, epoch]).permutation(37).tolist()


def test_options_reach_the_generator_and_serve_the_derived_batches(numbered_split):
    options = LoaderOptions(batch_size=8, seed=3, storage="memory")
    generator = HDF5DatasetGenerator(numbered_split, options)
    assert generator.options is options
    assert (generator.batch_size, generator.seed, generator.shuffle) == (8, 3, True)
    assert (generator.shard, generator.image_size) == (Shard(), None)
    for epoch in range(2):
        generator.set_epoch(epoch)
        order = shuffled_order(3, epoch)
        assert served_indices(generator) == [order[start : start + 8] for start in range(0, 37, 8)]

    unshuffled = HDF5DatasetGenerator(numbered_split, dataclasses.replace(options, shuffle=False))
    assert served_indices(unshuffled) == [
        list(range(start, min(start + 8, 37))) for start in range(0, 37, 8)
    ]


def test_shard_and_batch_multiple_options_cut_the_derived_order(numbered_split):
    options = LoaderOptions(
        batch_size=8, seed=5, storage="memory", shard=Shard(1, 2, equal=True), batch_multiple=4
    )
    generator = HDF5DatasetGenerator(numbered_split, options)
    # 37 samples, equal shards of 2: the first 36 of the order, this worker the second 18;
    # the last batch of 2 is cut to a multiple of 4 devices: nothing of it is left.
    part = shuffled_order(5, 0)[18:36]
    assert served_indices(generator) == [part[:8], part[8:16]]
    assert generator.shard == Shard(1, 2, equal=True)


def test_keras_pydataset_options_are_passed_on(numbered_split):
    generator = HDF5DatasetGenerator(
        numbered_split, LoaderOptions(batch_size=8, workers=3, use_multiprocessing=True)
    )
    assert (generator.workers, generator.use_multiprocessing) == (3, True)
    assert HDF5DatasetGenerator(numbered_split, LoaderOptions(batch_size=8)).workers == 1


def test_a_batch_size_in_place_of_the_options_is_refused_naming_loader_options(numbered_split):
    with pytest.raises(TypeError, match=r"takes a LoaderOptions .* got int 8"):
        HDF5DatasetGenerator(numbered_split, 8)
