"""The loader against the reference generator and the limits, all in one run.

    .venv/bin/python bench/loader.py [--samples 20000] [--batches 60]

On a generated split of 32x32 images (CIFAR-like), batch 128, pad-crop and flip:
  (a) reference: the reference project's generator (bench/reference_generator.py)
  (b) this loader, in memory          target: >= 60x (a)
  (c) this loader, out of core        target: >= half of (e)
  (d) limit: shuffled gather from memory, no augmentation
  (e) sequential HDF5 read rate (batch-sized slices, no augmentation)
On 64x64 images (Tiny ImageNet-like) with the reference augmentation set
(rotation 18, zoom 0.15, shift 0.2, shear 0.15, flip, nearest fill):
  this loader against the reference generator   target: >= 10x
And one `fit` epoch of the demo model on the digits data set fed by this
loader against `fit` on the same arrays in memory   target: within 3%
(each epoch timed inside one multi-epoch fit, as train.py fits; --fit-only
measures this alone).
Every figure is the best of 3 runs: this machine's two cores are shared.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_generator import (  # noqa: E402
    ImageToArrayPreprocessor,
    MeanPreprocessor,
    ReferenceHDF5DatasetGenerator,
    cifar_augmentation,
    tiny_imagenet_augmentation,
)

from pipeline.datasets.hdf5_reader import open_split  # noqa: E402
from pipeline.datasets.hdf5_writer import SplitWriter  # noqa: E402
from pipeline.io import HDF5DatasetGenerator, LoaderOptions  # noqa: E402

REPEATS = 3
# A fit epoch on digits takes about 2 s; more runs steady the 3% comparison.
FIT_REPEATS = 8
BATCH = 128


def write_split(path: Path, num_samples: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    # Smooth random images (not noise), like photographs at this size.
    small = rng.integers(0, 256, (num_samples, size // 4, size // 4, 3), dtype=np.uint8)
    images = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2)
    labels = rng.integers(0, 10, num_samples).astype(np.int32)
    with SplitWriter(
        path, image_shape=images.shape[1:], class_names=[str(c) for c in range(10)],
        split="train", source="bench",
    ) as writer:  # fmt: skip
        writer.add(images, labels)
        writer.finish((120.0, 115.0, 110.0), (60.0, 60.0, 60.0), covariance=np.eye(3) * 3600)
    return path


def rate(function, num_images: int) -> float:
    """Best images/s of REPEATS runs of function()."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return num_images / best


def reference_rate(path, num_batches, augmentation) -> float:
    reference = ReferenceHDF5DatasetGenerator(
        path,
        BATCH,
        preprocessors=[MeanPreprocessor(120.0, 115.0, 110.0), ImageToArrayPreprocessor()],
        aug=augmentation,
    )

    def run():
        batches = reference.generator()
        for _ in range(num_batches):
            next(batches)

    result = rate(run, num_batches * BATCH)
    reference.close()
    return result


def loader_rate(path, num_batches=None, **options) -> float:
    """Images/s of a generator over `num_batches` batches of fresh epochs (None: whole epochs)."""
    generator = HDF5DatasetGenerator(path, LoaderOptions(batch_size=BATCH, seed=0, **options))
    generator[0]  # load the split (memory) or the first blocks before timing
    num_batches = num_batches or len(generator)
    epoch = iter(range(1, 1000))

    def run():
        generator.set_epoch(next(epoch))
        for index in range(num_batches):
            generator[index]

    return rate(run, min(num_batches * BATCH, generator.num_samples))


def gather_rate(path, num_batches) -> float:
    with open_split(path) as handle:
        images = handle["images"][()]
    order = np.random.default_rng(0).permutation(len(images))

    def run():
        for index in range(num_batches):
            images[order[index * BATCH : (index + 1) * BATCH]]

    return rate(run, num_batches * BATCH)


def sequential_read_rate(path) -> float:
    """Images/s of reading the whole split in order, in batch-sized slices."""
    with open_split(path) as handle:
        num_samples = handle["labels"].shape[0]

    def run():
        with open_split(path) as handle:
            dataset = handle["images"]
            for start in range(0, num_samples, BATCH):
                dataset[start : start + BATCH]

    return rate(run, num_samples)


def fit_epoch_times(scratch: Path) -> tuple[float, float]:
    """Seconds of one fit epoch on digits: this loader, then the same data as arrays."""
    import keras

    from pipeline.config import load_config
    from pipeline.datasets import digits
    from pipeline.datasets.hdf5_format import split_path
    from pipeline.models import build_model_for_data

    dataset_dir = scratch / "digits"
    digits.build(dataset_dir)
    config = load_config()
    generator = HDF5DatasetGenerator(
        split_path(dataset_dir, "train"), LoaderOptions(batch_size=64, seed=0)
    )
    images = generator.storage.read(np.arange(generator.num_samples))
    labels = generator.labels()
    model = build_model_for_data(config.model, generator.info, generator.image_shape)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")

    class EpochTimes(keras.callbacks.Callback):
        """Each epoch's seconds inside one fit, as train.py fits: Keras reads a few
        batches to learn their shapes once per fit call, not once per epoch."""

        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    def best_epoch(**fit_arguments) -> float:
        timer = EpochTimes()
        # The first epoch compiles the step; the best of the rest is the steady pace.
        model.fit(epochs=FIT_REPEATS + 1, verbose=0, callbacks=[timer], **fit_arguments)
        return min(timer.seconds[1:])

    loader, arrays = [], []
    for _ in range(3):  # alternated, so the shared cores' noise falls on both alike
        loader.append(best_epoch(x=generator))
        arrays.append(best_epoch(x=images, y=labels, batch_size=64, shuffle=True))
    return min(loader), min(arrays)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=60, help="batches timed per run")
    parser.add_argument("--fit-only", action="store_true", help="only the fit comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as scratch:
        scratch = Path(scratch)
        if not args.fit_only:
            loader_rates(scratch, args)
        loader_seconds, array_seconds = fit_epoch_times(scratch)
        print("one fit epoch of the demo model on digits (seconds):")
        print(f"  fed by the loader            {loader_seconds:10.3f}")
        print(f"  fed by arrays in memory      {array_seconds:10.3f}   "
              f"loader/arrays = {loader_seconds / array_seconds:.3f}   target <= 1.03")  # fmt: skip


def loader_rates(scratch: Path, args) -> None:
    """(a)-(e) and the 64x64 comparison with the reference generator."""
    cifar = write_split(scratch / "cifar.h5", args.samples, 32)
    pad_flip = [{"name": "pad_crop", "pad": 4}, {"name": "flip"}]
    reference = reference_rate(cifar, args.batches // 4, cifar_augmentation())
    memory = loader_rate(cifar, args.batches, storage="memory", augment=pad_flip)
    # Out of core over whole epochs, so that every block is read once per epoch.
    disk = loader_rate(cifar, storage="disk", augment=pad_flip)
    disk_raw = loader_rate(cifar, storage="disk")
    gather = gather_rate(cifar, args.batches)
    sequential = sequential_read_rate(cifar)
    print(f"32x32, batch {BATCH}, pad-crop + flip (images/s, best of {REPEATS}):")
    print(f"  (a) reference generator      {reference:10.0f}")
    print(f"  (b) loader, in memory        {memory:10.0f}   {memory / reference:6.1f}x (a)"
          f"   target >= 60x")  # fmt: skip
    print(f"  (c) loader, out of core      {disk:10.0f}   {disk / memory:6.0%} of (b)")
    print(f"      same, no augmentation    {disk_raw:10.0f}   "
          f"{disk_raw / sequential:6.0%} of (e)   target >= 50%")  # fmt: skip
    print(f"  (d) shuffled gather, memory  {gather:10.0f}   (b) is {memory / gather:.0%} of it")
    print(f"  (e) sequential HDF5 read     {sequential:10.0f}")

    tiny = write_split(scratch / "tiny.h5", args.samples // 4, 64)
    reference_tiny = reference_rate(tiny, args.batches // 6, tiny_imagenet_augmentation())
    loader_tiny = loader_rate(tiny, args.batches // 2, augment=[{"name": "reference"}])
    print(f"64x64, batch {BATCH}, the reference augmentation set (images/s):")
    print(f"  reference generator          {reference_tiny:10.0f}")
    print(f"  loader, in memory            {loader_tiny:10.0f}   "
          f"{loader_tiny / reference_tiny:6.1f}x   target >= 10x")  # fmt: skip


if __name__ == "__main__":
    main()
