"""HDF5DatasetGenerator: batches of one HDF5 split as a keras.utils.PyDataset."""

import math

import keras
import numpy as np

from pipeline.datasets.hdf5_format import open_split, read_split_info
from pipeline.datasets.images import decode_image, resize_and_center_crop
from pipeline.errors import UserError


class HDF5DatasetGenerator(keras.utils.PyDataset):
    """Serves every sample of a split exactly once per epoch, the last partial batch included.

    With `shuffle`, the order of epoch e is a permutation drawn from (seed, e), so
    it differs between epochs yet is the same in every run and after a resume.
    The training loop tells the generator which epoch it is in (`set_epoch`,
    done by `pipeline.callbacks.LoaderEpochSync`), because Keras calls
    `on_epoch_end` more often than once per epoch. Batches are uint8 RGB images
    and int32 labels; normalisation happens inside the model. JPEG-encoded
    splits are decoded on the fly and brought to `image_size` x `image_size`
    (shorter side scaled, centre crop).
    """

    def __init__(
        self,
        db_path,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        image_size: int | None = None,
        **pydataset_options,
    ) -> None:
        super().__init__(**pydataset_options)
        self.info = read_split_info(db_path)
        if self.info.encoding == "jpeg" and not image_size:
            raise UserError(
                f"{db_path} holds JPEG-encoded images of varying size; set the size to "
                f"decode them to (data.image_size in the config)"
            )
        self.image_size = image_size if self.info.encoding == "jpeg" else None
        if not 1 <= batch_size <= self.info.num_samples:
            raise UserError(
                f"batch_size must be between 1 and the {self.info.num_samples} samples of "
                f"{db_path}, got {batch_size}"
            )
        self.db_path = db_path
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._images = None
        self._labels = None
        # (epoch, order) swapped as one object, so threaded workers never see
        # the order of one epoch paired with the number of another.
        self._cached_order = (None, None)

    @property
    def num_samples(self) -> int:
        return self.info.num_samples

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape of each image in a batch."""
        if self.image_size:
            return (self.image_size, self.image_size, 3)
        return self.info.image_shape

    def __len__(self) -> int:
        return math.ceil(self.info.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the sample order of `epoch` (0-based) for the batches served next."""
        self.epoch = int(epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The sample indices of `epoch`, in the order they are served."""
        if not self.shuffle:
            return np.arange(self.info.num_samples)
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self.info.num_samples)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        self._load()
        epoch = self.epoch
        cached_epoch, order = self._cached_order
        if cached_epoch != epoch:
            order = self.epoch_order(epoch)
            self._cached_order = (epoch, order)
        indices = order[index * self.batch_size : (index + 1) * self.batch_size]
        return self._batch_images(indices), self._labels[indices]

    def _batch_images(self, indices: np.ndarray) -> np.ndarray:
        if self.image_size is None:
            return self._images[indices]
        return np.stack(
            [
                resize_and_center_crop(decode_image(self._images[index].tobytes()), self.image_size)
                for index in indices
            ]
        )

    def labels(self) -> np.ndarray:
        """All labels of the split in file order."""
        self._load()
        return self._labels

    def _load(self) -> None:
        # Loaded on first use, so that a generator handed to another process
        # reads the file there rather than pickling the arrays across.
        if self._images is None:
            with open_split(self.db_path) as handle:
                self._labels = handle["labels"][()]
                self._images = handle["images"][()]
