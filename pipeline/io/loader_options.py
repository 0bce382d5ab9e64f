"""LoaderOptions: how an HDF5DatasetGenerator serves a split."""

import dataclasses

from pipeline.io.epoch_order import WHOLE_SPLIT, Shard


@dataclasses.dataclass(frozen=True)
class LoaderOptions:
    """How a split is served: `HDF5DatasetGenerator(db_path, LoaderOptions(batch_size=64))`.

    The values are checked against the split when the generator opens it.

    - `batch_size`: samples per batch (per worker when training is sharded).
    - `shuffle`: every epoch has its own order, drawn from (seed, epoch): different
      every epoch, identical in every run and after a resume. False serves the file
      order, as evaluation needs.
    - `augment`: the train-time augmentations, a list of steps from the config
      (`data.augment`) or an `Augmenter` already built; None or empty: none.
    - `seed`: the seed of the order and of the augmentation draws (which come from
      (seed, epoch, batch), so a resumed run augments every batch identically).
    - `image_size`: the side the model eats, in pixels; None serves the stored size.
      JPEG-encoded splits need it: their images are scaled and centre-cropped to it
      unless the augmentation does the sizing; larger raw images are centre-cropped.
    - `storage`: `memory` reads the split once; `disk` reads blocks of whole chunks on
      demand and shuffles whole blocks, then samples within a window of
      `shuffle_buffer` samples, so memory stays bounded; `auto` picks memory when the
      images take at most a quarter of RAM.
    - `shuffle_buffer`: the window of the disk mode, in samples; None picks one.
    - `shard`: an `epoch_order.Shard` that gives this worker a disjoint part of every
      epoch's order; the default serves the whole split.
    - `batch_multiple`: for data-parallel training on several devices, the last
      batch is cut to a multiple of the device count (see EpochOrder).
    - `workers`, `use_multiprocessing`: Keras PyDataset's loader workers (1 loads in
      the training thread) and whether they are processes rather than threads.
    """

    batch_size: int
    shuffle: bool = True
    augment: object = None
    seed: int = 0
    image_size: int | None = None
    storage: str = "auto"
    shuffle_buffer: int | None = None
    shard: Shard = WHOLE_SPLIT
    batch_multiple: int = 1
    workers: int = 1
    use_multiprocessing: bool = False
