"""10-crop evaluation against single-crop evaluation: same model, same data, one run.

    .venv/bin/python bench/evaluate.py [--samples 2048] [--preset resnet20]

Ten views per image should cost about ten times one view and no more: the
crops are taken with array slicing for the whole batch, never image by image.
Target: 10-crop time <= 10.5x single-crop time. Best of 3 runs each.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.datasets.hdf5_writer import SplitWriter
from pipeline.evaluation.rank_accuracy import predict_split
from pipeline.io import HDF5DatasetGenerator, LoaderOptions
from pipeline.nn import build_preset

REPEATS = 3


def write_split(path: Path, num_samples: int, side: int) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (num_samples, side, side, 3), dtype=np.uint8)
    with SplitWriter(
        path, image_shape=images.shape[1:], class_names=[str(c) for c in range(10)],
        split="test", source="bench",
    ) as writer:  # fmt: skip
        writer.add(images, rng.integers(0, 10, num_samples))
        writer.finish((120.0,) * 3, (60.0,) * 3)
    return path


def best_seconds(function) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--preset", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    model = build_preset(args.preset, 10, (32, 32, 3))
    with tempfile.TemporaryDirectory() as scratch:
        # Stored at 36x36, so that single crop is the centre 32x32 and 10-crop has corners.
        path = write_split(Path(scratch) / "test.h5", args.samples, 36)
        single = HDF5DatasetGenerator(
            path, LoaderOptions(batch_size=args.batch_size, shuffle=False, image_size=32)
        )
        full = HDF5DatasetGenerator(path, LoaderOptions(batch_size=args.batch_size, shuffle=False))
        predict_split(model, single)  # build the prediction function once before timing
        one = best_seconds(lambda: predict_split(model, single))
        ten = best_seconds(lambda: predict_split(model, full, mode="ten_crop", crop_size=32))
    print(f"{args.preset}, {args.samples} images of 36x36, batch {args.batch_size}, "
          f"best of {REPEATS}:", file=sys.stderr)  # fmt: skip
    print(f"single crop: {one:8.2f} s  ({args.samples / one:8.0f} images/s)")
    print(f"10-crop:     {ten:8.2f} s  ({args.samples / ten:8.0f} images/s)")
    print(f"10-crop / single crop: {ten / one:.2f}x   target <= 10.5x")


if __name__ == "__main__":
    main()
