"""HDF5DatasetGenerator: shuffled, augmented batches of one HDF5 split (a keras PyDataset)."""

import keras
import numpy as np

from pipeline.datasets.hdf5_reader import read_split_info
from pipeline.datasets.images import decode_image, resize_and_center_crop
from pipeline.errors import UserError
from pipeline.io.augment import Augmenter, build_augmenter
from pipeline.io.augment_operations import CenterCrop
from pipeline.io.epoch_order import EpochOrder
from pipeline.io.loader_options import LoaderOptions
from pipeline.io.storage import open_storage

# Tag that keeps augmentation's random stream apart from the ordering's (epoch_order).
_AUGMENT_STREAM = 1


class HDF5DatasetGenerator(keras.utils.PyDataset):
    """Serves every sample of a split (or of this worker's shard) once per epoch, as
    `options` (a LoaderOptions: batch size, shuffle, augmentation, storage, ...) say.

    - Order: `pipeline.io.epoch_order.EpochOrder`. `on_epoch_end` moves on to the
      next epoch, so a plain `model.fit(generator, epochs=N)` reshuffles; train.py
      also pins the epoch Keras trains (`set_epoch`, via
      `pipeline.training.callbacks.LoaderEpochSync`).
    - Position: `set_epoch(e, start_batch=b)` serves the rest of epoch e from
      batch b on, exactly the batches an uninterrupted run would have served,
      augmented identically.
    - Batches: uint8 RGB images and int32 labels; normalisation is in the
      model. JPEG-encoded splits are decoded here.
    - The settings are also attributes (`batch_size`, `seed`, `shard`, `image_size`,
      `shuffle`), and `options` holds them as given.
    """

    def __init__(self, db_path, options: LoaderOptions) -> None:
        if not isinstance(options, LoaderOptions):
            raise TypeError(
                f"HDF5DatasetGenerator takes a LoaderOptions after the split's path, got "
                f"{type(options).__name__} {options!r}: write "
                f"HDF5DatasetGenerator(db_path, LoaderOptions(batch_size=...))"
            )
        super().__init__(workers=options.workers, use_multiprocessing=options.use_multiprocessing)
        self.options = options
        self.info = read_split_info(db_path)
        if self.info.num_samples == 0:
            raise UserError(f"{db_path} holds no samples; rebuild the data set with --overwrite")
        self.db_path = db_path
        self.seed = options.seed
        self.shard = options.shard
        self.batch_size = options.batch_size
        self.image_size = _check_image_size(self.info, options.image_size, db_path)
        self.augmenter = _augmenter_for(options.augment, self.info, self.image_size)
        _check_crop(self.augmenter.crop_side, self.image_shape, self.info, options.image_size)
        self.storage, disk_layout = open_storage(
            self.info, options.storage, options.shuffle_buffer, options.batch_size
        )
        try:
            self.order = EpochOrder(
                self.info.num_samples,
                options.batch_size,
                seed=options.seed,
                shuffle=options.shuffle,
                disk_layout=disk_layout,
                shard=options.shard,
                batch_multiple=options.batch_multiple,
            )
        except UserError as error:
            raise UserError(f"{db_path}: {error}") from None
        self.epoch = 0
        self.start_batch = 0
        # (epoch, order, read plan) swapped as one object, so threaded workers never
        # see the order of one epoch paired with the number of another.
        self._cached_order = (None, None, None)

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
    def num_samples(self) -> int:
        """The samples of this shard (the whole split without sharding)."""
        return self.order.samples_per_shard

    @property
    def samples_per_epoch(self) -> int:
        """The samples an epoch serves (see EpochOrder's batch_multiple)."""
        return self.order.samples_per_epoch

    @property
    def shuffle(self) -> bool:
        """Whether every epoch has its own order (False: file order, as evaluation needs)."""
        return self.order.shuffle

    @property
    def batches_per_epoch(self) -> int:
        return self.order.batches_per_epoch

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
        return self.order(epoch)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        epoch, batch = self.epoch, self.start_batch + index
        cached_epoch, order, plan = self._cached_order
        if cached_epoch != epoch:
            order = self.order(epoch)
            plan = self.storage.plan(order, self.batch_size)
            self._cached_order = (epoch, order, plan)
        indices = self.order.batch(order, batch)
        images = self.load_batch(indices, epoch, batch, plan)
        return images, self.storage.labels[indices]

    def load_batch(self, indices: np.ndarray, epoch: int, batch: int, plan=None) -> np.ndarray:
        """The images of `indices`, decoded, sized and augmented as batch `batch` of `epoch`
        (`plan`: the storage's read plan of the epoch, to read the coming blocks ahead)."""
        # Augmentation draws depend only on (seed, epoch, batch, shard): a resumed run
        # or another worker count augments every batch identically.
        rng = self._augment_rng(epoch, batch) if self.augmenter.steps else None
        stored = self.storage.read(indices, plan, batch * self.batch_size)
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
        return np.random.default_rng([self.seed, _AUGMENT_STREAM, epoch, batch, self.shard.index])


def _augmenter_for(augment, info, image_size) -> Augmenter:
    """The augmentation pipeline of `augment` (a list of steps from the config, or an
    Augmenter already built), checked against the size the split serves."""
    augmenter = (
        augment
        if isinstance(augment, Augmenter)
        else build_augmenter(augment or (), covariance=info.covariance)
    )
    if augmenter.sizes_images and augmenter.steps[0].size != image_size:
        raise UserError(
            f"the scale augmentation crops {augmenter.steps[0].size} pixels but "
            f"data.image_size is {image_size}: make them equal"
        )
    return augmenter


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
