"""HDF5DatasetGenerator: shuffled, augmented batches of one HDF5 split (a keras PyDataset)."""

import math

import keras
import numpy as np

from pipeline.datasets.hdf5_format import read_split_info
from pipeline.datasets.images import decode_image, resize_and_center_crop
from pipeline.errors import UserError
from pipeline.io.augment import Augmenter, CenterCrop, build_augmenter
from pipeline.io.storage import (
    IN_MEMORY_SHARE_OF_RAM,
    InMemoryStorage,
    OutOfCoreStorage,
    physical_memory_bytes,
    stored_image_bytes,
)

STORAGE_MODES = ("auto", "memory", "disk")
# Out-of-core shuffling mixes samples within windows of about this many bytes.
DEFAULT_SHUFFLE_BUFFER_BYTES = 256 << 20
# Tags that keep the random streams of ordering and augmentation apart.
_ORDER_STREAM, _AUGMENT_STREAM = 0, 1


class HDF5DatasetGenerator(keras.utils.PyDataset):
    """Serves every sample of a split (or of this worker's shard) once per epoch.

    - Order: with `shuffle`, epoch e's order is drawn from (seed, e): different
      every epoch, identical in every run and after a resume. The training loop
      sets the epoch (`set_epoch`, done by `pipeline.callbacks.LoaderEpochSync`),
      since Keras calls `on_epoch_end` more than once per epoch.
    - Position: `set_epoch(e, start_batch=b)` serves the rest of epoch e from
      batch b on, exactly the batches an uninterrupted run would have served,
      augmented identically (augmentation draws come from (seed, e, batch)).
    - Storage: `memory` reads the split once; `disk` reads blocks of whole
      chunks on demand and shuffles whole blocks, then samples within a window
      of `shuffle_buffer` samples, so memory stays bounded; `auto` picks memory
      when the images take at most a quarter of RAM.
    - Sharding: worker `shard_index` of `num_shards` gets a disjoint,
      contiguous part of every epoch's order (the parts cover the epoch).
      With `equal_shards` every shard serves the same number of samples, as
      workers that step together need: the order is cut to a multiple of
      `num_shards` first (fewer than num_shards samples sit out, different
      ones every shuffled epoch).
    - `batch_multiple`: for data-parallel training on several devices, the last
      batch is cut to a multiple of the device count (see samples_per_epoch).
    - Batches: uint8 RGB images and int32 labels; normalisation is in the
      model. JPEG-encoded splits are decoded here; `image_size` is the size
      the model eats (JPEG images are scaled and centre-cropped to it unless
      the augmentation does the sizing; larger raw images are centre-cropped).
    """

    def __init__(
        self,
        db_path,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment=None,
        seed: int = 0,
        image_size: int | None = None,
        storage: str = "auto",
        shuffle_buffer: int | None = None,
        shard_index: int = 0,
        num_shards: int = 1,
        equal_shards: bool = False,
        batch_multiple: int = 1,
        **pydataset_options,
    ) -> None:
        super().__init__(**pydataset_options)
        self.info = read_split_info(db_path)
        self.db_path = db_path
        self.shuffle = shuffle
        self.seed = seed
        self.shard_index, self.num_shards = _check_shard(shard_index, num_shards)
        self.equal_shards = equal_shards
        self.num_samples = len(
            np.array_split(self._shardable(np.arange(self.info.num_samples)), num_shards)[
                shard_index
            ]
        )
        if not 1 <= batch_size <= self.num_samples:
            raise UserError(
                f"batch_size must be between 1 and the {self.num_samples} samples of "
                f"{db_path}{' in this shard' if num_shards > 1 else ''}, got {batch_size}"
            )
        if batch_size % batch_multiple:
            raise UserError(
                f"batch_size {batch_size} must be a multiple of the {batch_multiple} devices "
                f"training in parallel"
            )
        self.batch_size = batch_size
        # Data-parallel training on JAX splits every batch evenly between devices, so
        # the last, partial batch is cut to a multiple of their number: fewer than
        # batch_multiple samples sit out each epoch, different ones every epoch.
        self.samples_per_epoch = self.num_samples - (self.num_samples % batch_size) % batch_multiple
        self.image_size = _check_image_size(self.info, image_size, db_path)
        self.augmenter = (
            augment
            if isinstance(augment, Augmenter)
            else build_augmenter(augment or (), covariance=self.info.covariance)
        )
        if self.augmenter.sizes_images and self.augmenter.steps[0].size != self.image_size:
            raise UserError(
                f"the scale augmentation crops {self.augmenter.steps[0].size} pixels but "
                f"data.image_size is {self.image_size}: make them equal"
            )
        _check_crop(self.augmenter.crop_side, self.image_shape, self.info, image_size)
        self.storage = self._open_storage(storage, shuffle_buffer)
        self.epoch = 0
        self.start_batch = 0
        # (epoch, order) swapped as one object, so threaded workers never see
        # the order of one epoch paired with the number of another.
        self._cached_order = (None, None)

    # -- position -------------------------------------------------------------

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Serve epoch `epoch` (0-based) from its batch `start_batch` on."""
        if not 0 <= start_batch < self.batches_per_epoch:
            raise ValueError(
                f"start_batch must be in [0, {self.batches_per_epoch}), got {start_batch}"
            )
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def on_epoch_end(self) -> None:
        """Keras calls this after each epoch: go on to the next epoch's order (and its
        augmentations), from its first batch, so that a plain `model.fit(generator)`
        trains on new batch compositions every epoch. train.py also pins the epoch
        Keras trains (LoaderEpochSync), which keeps resumes exact."""
        self.set_epoch(self.epoch + 1)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.samples_per_epoch / self.batch_size)

    def __len__(self) -> int:
        """Batches left in the current epoch (all of them unless resumed mid-epoch)."""
        return self.batches_per_epoch - self.start_batch

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape of each image in a batch."""
        if self.image_size:
            return (self.image_size, self.image_size, 3)
        return self.info.image_shape

    # -- batches ----------------------------------------------------------------

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The sample indices this shard serves in `epoch`, in order."""
        total = self.info.num_samples
        if not self.shuffle:
            order = np.arange(total)
        else:
            rng = np.random.default_rng([self.seed, _ORDER_STREAM, epoch])
            if isinstance(self.storage, OutOfCoreStorage):
                order = windowed_block_order(
                    total, self.storage.block_rows, self.window_blocks, rng
                )
            else:
                order = rng.permutation(total)
        return np.array_split(self._shardable(order), self.num_shards)[self.shard_index]

    def _shardable(self, order: np.ndarray) -> np.ndarray:
        """The part of an epoch's order that is split between the shards."""
        if not self.equal_shards:
            return order
        return order[: len(order) - len(order) % self.num_shards]

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        epoch, batch = self.epoch, self.start_batch + index
        cached_epoch, order = self._cached_order
        if cached_epoch != epoch:
            order = self.epoch_order(epoch)
            self._cached_order = (epoch, order)
        stop = min((batch + 1) * self.batch_size, self.samples_per_epoch)
        indices = order[batch * self.batch_size : stop]
        return self.load_batch(indices, epoch, batch), self.storage.labels[indices]

    def load_batch(self, indices: np.ndarray, epoch: int, batch: int) -> np.ndarray:
        """The images of `indices`, decoded, sized and augmented as batch `batch` of `epoch`."""
        # Augmentation draws depend only on (seed, epoch, batch, shard): a resumed run
        # or another worker count augments every batch identically.
        rng = self._augment_rng(epoch, batch) if self.augmenter.steps else None
        stored = self.storage.read(indices)
        if self.info.encoding == "jpeg":
            decoded = [decode_image(row.tobytes()) for row in stored]
            if self.augmenter.sizes_images:
                return self.augmenter(decoded, rng)
            images = np.stack([resize_and_center_crop(image, self.image_size) for image in decoded])
        else:
            images = stored
        images = self.augmenter(images, rng) if self.augmenter.steps else images
        if self.image_size and max(images.shape[1:3]) > self.image_size:
            images = np.ascontiguousarray(CenterCrop(self.image_size)(images))
        return images

    def labels(self) -> np.ndarray:
        """All labels of the split in file order."""
        return self.storage.labels

    def _augment_rng(self, epoch: int, batch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _AUGMENT_STREAM, epoch, batch, self.shard_index])

    # -- storage ----------------------------------------------------------------

    def _open_storage(self, mode: str, shuffle_buffer: int | None):
        if mode not in STORAGE_MODES:
            raise UserError(f"storage must be one of {STORAGE_MODES}, got {mode!r}")
        if mode == "auto":
            mode = "memory" if fits_in_memory(self.db_path) else "disk"
        if mode == "memory":
            self.window_blocks = None
            return InMemoryStorage(self.db_path)
        bytes_per_image = (
            int(np.prod(self.info.image_shape))
            if self.info.image_shape
            else max(1, stored_image_bytes(self.db_path) // self.info.num_samples)
        )
        buffer = shuffle_buffer or max(1, DEFAULT_SHUFFLE_BUFFER_BYTES // bytes_per_image)
        block_rows = OutOfCoreStorage.rows_per_block(self.info.image_shape)
        self.window_blocks = max(1, buffer // block_rows)
        # Enough blocks for every window a batch can span, plus one window for the
        # threads that work on the neighbouring batches.
        windows_per_batch = math.ceil(self.batch_size / (self.window_blocks * block_rows)) + 1
        return OutOfCoreStorage(
            self.db_path,
            image_shape=self.info.image_shape,
            cache_blocks=(windows_per_batch + 1) * self.window_blocks,
        )


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


def fits_in_memory(db_path) -> bool:
    """Whether `storage = "auto"` keeps this split in memory on this machine."""
    return stored_image_bytes(db_path) <= IN_MEMORY_SHARE_OF_RAM * physical_memory_bytes()


def _check_shard(shard_index: int, num_shards: int) -> tuple[int, int]:
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UserError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
    return shard_index, num_shards


def _check_crop(crop_side, image_shape, info, image_size) -> None:
    """A crop must give the images the split serves (the model's input): a smaller one
    would train on one size and validate on another."""
    if crop_side is None or (crop_side, crop_side) == tuple(image_shape[:2]):
        return
    height, width = image_shape[:2]
    if info.encoding == "jpeg":
        raise UserError(
            f"a crop of {crop_side} pixels, but JPEG images are decoded to data.image_size "
            f"{image_size}x{image_size}: crop at random while decoding with "
            f'{{name = "scale", min_side = {image_size}, max_side = {image_size}, '
            f"size = {crop_side}}} and set data.image_size = {crop_side}"
        )
    raise UserError(
        f"a crop of {crop_side} pixels, but the split serves {height}x{width} images "
        f"(data.image_size {image_size or 0}); set data.image_size = {crop_side}, which "
        f"centre-crops the validation and test images to the same size"
    )


def _check_image_size(info, image_size, db_path):
    if info.encoding == "jpeg" and not image_size:
        raise UserError(
            f"{db_path} holds JPEG-encoded images of varying size; set the size to "
            f"decode them to (data.image_size in the config)"
        )
    if image_size and info.image_shape and min(info.image_shape[:2]) < image_size:
        raise UserError(
            f"data.image_size {image_size} is larger than the stored images "
            f"{info.image_shape[:2]} of {db_path}"
        )
    return image_size or None
