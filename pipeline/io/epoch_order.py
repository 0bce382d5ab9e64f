"""Which samples each epoch serves and in which order: a pure function of (seed, epoch).

No Keras and no files here. The loader asks `EpochOrder.batch(epoch, batch)` for
the sample indices of one batch; every run, every resume and every worker count
gets the same answer, which is what makes resumes exact.
"""

import dataclasses
import math

import numpy as np

from pipeline.errors import UserError

# Tag that keeps the ordering's random stream apart from the augmentation's.
ORDER_STREAM = 0


@dataclasses.dataclass(frozen=True)
class Shard:
    """Worker `index` of `count`: it serves a disjoint, contiguous part of every epoch's
    order (the parts cover the epoch). With `equal`, every shard serves the same number
    of samples, as workers that step together need: the order is cut to a multiple of
    `count` first (fewer than `count` samples sit out, different ones every shuffled
    epoch)."""

    index: int = 0
    count: int = 1
    equal: bool = False

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UserError(f"shard index must be in [0, {self.count}), got {self.index}")

    def part(self, order: np.ndarray) -> np.ndarray:
        """This shard's part of an epoch's order."""
        return np.array_split(order[: self._shared(len(order))], self.count)[self.index]

    def size_of(self, total: int) -> int:
        """How many of `total` samples `part` gives this shard (without building them:
        the loader asks for every batch)."""
        shared = self._shared(total)
        # np.array_split gives the first `shared % count` parts one sample more.
        return shared // self.count + (1 if self.index < shared % self.count else 0)

    def _shared(self, total: int) -> int:
        """The samples split between the shards: all, or with `equal` a multiple of count."""
        return total - total % self.count if self.equal else total


# The one shard of a process that serves the whole split.
WHOLE_SPLIT = Shard()


@dataclasses.dataclass(frozen=True)
class DiskLayout:
    """How an out-of-core split is read: blocks of `block_rows` consecutive samples, and
    windows of `window_blocks` blocks whose samples are shuffled among themselves."""

    block_rows: int
    window_blocks: int


@dataclasses.dataclass(frozen=True)
class EpochOrder:
    """The batches of every epoch for one shard: which samples, in which order.

    Without `shuffle`, file order. With it, epoch e's order is drawn from (seed, e):
    a permutation of all samples, or with a `disk_layout` one that reads well from
    disk (see windowed_block_order). Different every epoch, identical in every run.

    `batch_multiple`: JAX's data-parallel training splits every batch evenly between
    its devices, so the last, partial batch is cut to a multiple of their number:
    fewer than batch_multiple samples sit out each epoch, different ones every
    shuffled epoch.
    """

    num_samples: int
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    disk_layout: DiskLayout | None = None
    shard: Shard = WHOLE_SPLIT
    batch_multiple: int = 1

    def __post_init__(self) -> None:
        served = self.samples_per_shard
        if not 1 <= self.batch_size <= served:
            where = " in this shard" if self.shard.count > 1 else ""
            raise UserError(
                f"batch_size must be between 1 and the {served} samples{where}, "
                f"got {self.batch_size}"
            )
        if self.batch_size % self.batch_multiple:
            raise UserError(
                f"batch_size {self.batch_size} must be a multiple of the "
                f"{self.batch_multiple} devices training in parallel"
            )

    @property
    def samples_per_shard(self) -> int:
        """How many samples this shard holds in every epoch."""
        return self.shard.size_of(self.num_samples)

    @property
    def samples_per_epoch(self) -> int:
        """How many of them an epoch serves (see batch_multiple)."""
        served = self.samples_per_shard
        return served - (served % self.batch_size) % self.batch_multiple

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.samples_per_epoch / self.batch_size)

    def __call__(self, epoch: int) -> np.ndarray:
        """The sample indices this shard serves in `epoch` (0-based), in order."""
        if not self.shuffle:
            return self.shard.part(np.arange(self.num_samples))
        rng = np.random.default_rng([self.seed, ORDER_STREAM, epoch])
        if self.disk_layout is None:
            order = rng.permutation(self.num_samples)
        else:
            layout = self.disk_layout
            order = windowed_block_order(
                self.num_samples, layout.block_rows, layout.window_blocks, rng
            )
        return self.shard.part(order)

    def batch(self, order: np.ndarray, batch: int) -> np.ndarray:
        """The samples of batch `batch` of an epoch whose order is `order` (the last
        batch may be short)."""
        if not 0 <= batch < self.batches_per_epoch:
            raise IndexError(f"batch {batch} out of range for {self.batches_per_epoch} batches")
        stop = min((batch + 1) * self.batch_size, self.samples_per_epoch)
        return order[batch * self.batch_size : stop]


def windowed_block_order(num_samples, block_rows, window_blocks, rng) -> np.ndarray:
    """A permutation of all samples that reads well from disk.

    Blocks of `block_rows` consecutive samples are shuffled; then the samples
    of each run of `window_blocks` shuffled blocks are shuffled among
    themselves. A batch thus touches at most two windows' blocks.
    """
    num_blocks = math.ceil(num_samples / block_rows)
    blocks = rng.permutation(num_blocks)
    pieces = []
    for start in range(0, num_blocks, window_blocks):
        members = np.concatenate(
            [
                np.arange(block * block_rows, min(num_samples, (block + 1) * block_rows))
                for block in blocks[start : start + window_blocks]
            ]
        )
        pieces.append(rng.permutation(members))
    return np.concatenate(pieces)
