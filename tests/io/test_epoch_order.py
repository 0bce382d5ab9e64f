"""EpochOrder: which samples every batch of every epoch serves (pure NumPy, no files)."""

import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.io.epoch_order import DiskLayout, EpochOrder, Shard


def epoch_batches(order: EpochOrder, epoch: int) -> list[list[int]]:
    indices = order(epoch)
    return [order.batch(indices, batch).tolist() for batch in range(order.batches_per_epoch)]


def test_every_epoch_serves_every_sample_once_in_a_new_order_and_the_last_batch_is_kept():
    order = EpochOrder(num_samples=23, batch_size=5, seed=4)
    epochs = [epoch_batches(order, epoch) for epoch in range(3)]
    for batches in epochs:
        assert [len(batch) for batch in batches] == [5, 5, 5, 5, 3]
        assert sorted(sum(batches, [])) == list(range(23))
    assert epochs[0] != epochs[1] != epochs[2]


def test_the_order_depends_only_on_seed_and_epoch():
    first = EpochOrder(num_samples=50, batch_size=8, seed=1)
    again = EpochOrder(num_samples=50, batch_size=8, seed=1)
    other_seed = EpochOrder(num_samples=50, batch_size=8, seed=2)
    assert first(3).tolist() == again(3).tolist()
    assert first(3).tolist() != other_seed(3).tolist()


def test_without_shuffle_the_order_is_file_order_every_epoch():
    order = EpochOrder(num_samples=7, batch_size=3, shuffle=False)
    assert epoch_batches(order, 0) == epoch_batches(order, 5) == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_disk_layout_keeps_the_samples_of_a_window_together():
    order = EpochOrder(num_samples=64, batch_size=8, seed=0, disk_layout=DiskLayout(8, 2))
    indices = order(0)
    assert sorted(indices.tolist()) == list(range(64))
    # Each run of 16 samples comes from two whole blocks of 8.
    for start in range(0, 64, 16):
        blocks = {index // 8 for index in indices[start : start + 16]}
        assert len(blocks) == 2


def test_shards_split_one_order_and_equal_shards_leave_out_different_samples():
    whole = EpochOrder(num_samples=10, batch_size=1, seed=3)
    parts = [EpochOrder(num_samples=10, batch_size=1, seed=3, shard=Shard(i, 3)) for i in range(3)]
    assert [part.samples_per_shard for part in parts] == [4, 3, 3]
    assert np.concatenate([part(2) for part in parts]).tolist() == whole(2).tolist()
    equal = [
        EpochOrder(num_samples=10, batch_size=1, seed=3, shard=Shard(i, 3, equal=True))
        for i in range(3)
    ]
    assert [part.samples_per_shard for part in equal] == [3, 3, 3]
    left_out = {
        (set(range(10)) - set(np.concatenate([part(epoch) for part in equal]).tolist())).pop()
        for epoch in range(6)
    }
    assert len(left_out) > 1


def test_batch_multiple_cuts_the_last_batch_to_a_multiple_of_the_devices():
    order = EpochOrder(num_samples=23, batch_size=8, batch_multiple=4)
    assert order.samples_per_epoch == 20
    assert [len(batch) for batch in epoch_batches(order, 0)] == [8, 8, 4]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be between 1 and the 10 samples, got 0"),
        ({"batch_size": 11}, "batch_size must be between 1 and the 10 samples, got 11"),
        ({"batch_size": 6, "batch_multiple": 4}, "must be a multiple of the 4 devices"),
        ({"batch_size": 5, "shard": Shard(1, 2)}, None),
        ({"batch_size": 6, "shard": Shard(1, 2)}, "the 5 samples in this shard, got 6"),
    ],
)
def test_impossible_batches_are_user_errors(options, message):
    if message is None:
        EpochOrder(num_samples=10, **options)
        return
    with pytest.raises(UserError, match=message):
        EpochOrder(num_samples=10, **options)


def test_a_batch_out_of_range_is_an_index_error():
    order = EpochOrder(num_samples=10, batch_size=4)
    with pytest.raises(IndexError):
        order.batch(order(0), 3)


@pytest.mark.parametrize(("index", "count"), [(3, 3), (-1, 3), (0, 0)])
def test_a_bad_shard_is_a_user_error(index, count):
    with pytest.raises(UserError, match="shard index must be in"):
        Shard(index, count)
