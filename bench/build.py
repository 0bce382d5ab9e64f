"""Building a folder of JPEGs into HDF5: serial against parallel, against the limits, one run.

    .venv/bin/python bench/build.py [--small 4000] [--large 300] [--workers N]

Measures, on generated class folders of 64x64 JPEGs (Tiny ImageNet-like) and
of about 500x375 JPEGs (ImageNet-like, resized to 256 at build time):
  serial build      write_file_dataset with one process;
  parallel build    the same with --workers processes;
  decode limit      the decode-and-resize work alone on the same workers (no
                    writing, no statistics): what the build cannot beat;
  machine scaling   a pure-Python compute task on 1 and on --workers processes:
                    what parallelism can give on this machine at all;
  ceiling           what a build must do beside decoding, timed alone in this
                    process: listing the files, a plain file write of the
                    decoded pixels and their exact statistics. When the workers
                    fill every core, no build can beat decode / (decode +
                    listing + write + statistics) of the decode limit: on 2
                    cores the writer shares them with the workers; on a machine
                    with a spare core it would not.
Targets: parallel build >= 90% of the decode limit's rate; its speed-up over
serial >= 85% of the machine's scaling. Each figure is the best of 5 runs.
"""

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.datasets.builder import ImageRecord
from pipeline.datasets.folder import build as build_folder
from pipeline.datasets.folder import tree_records
from pipeline.datasets.image_folders import class_folders
from pipeline.datasets.images import read_image_file_into
from pipeline.datasets.parallel_decode import files_per_chunk
from pipeline.datasets.statistics import PixelMoments

NUM_CLASSES = 10
REPEATS = 5


def write_jpegs(root: Path, count: int, height: int, width: int, seed: int) -> None:
    """Smooth gradients plus noise: JPEGs that decode like photographs, not like flat colour."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 255, height)[:, None, None]
    cols = np.linspace(0, 255, width)[None, :, None]
    for index in range(count):
        folder = root / f"class_{index % NUM_CLASSES:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = (rows * rng.random(3) + cols * rng.random(3)) / 2
        noisy = base + rng.normal(0, 12, (height, width, 3))
        image = np.clip(noisy, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def decode_only(arguments):
    """Decode, resize and crop one file, as the build does, into a scratch array."""
    path, size = arguments
    read_image_file_into(path, size, np.empty((size, size, 3), np.uint8))


def decode_limit(root: Path, size: int, workers: int) -> float:
    """Seconds for a decode-only job: start a pool, decode and resize every file, discard.
    Files travel in chunks as large as the build's, so that task traffic costs both alike."""
    paths = sorted(map(str, root.rglob("*.jpg")))
    tasks = [(path, size) for path in paths]
    chunk = files_per_chunk([ImageRecord(path, 0) for path in paths])

    def run():
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(decode_only, tasks, chunksize=chunk)

    return timed(run)


def ceiling(root: Path, size: int) -> tuple[float, float, float, float]:
    """Seconds per image, in this process, to decode, to list the files, to write the
    pixels to a plain file, and to compute the exact statistics (moments by chunks of
    64, mean-image sums by batches of 256): the work a build adds to decoding (the
    decode limit gets its file list for free), measured alone."""
    paths = sorted(map(str, root.rglob("*.jpg")))
    images = np.empty((len(paths), size, size, 3), np.uint8)

    def decode():
        for index, path in enumerate(paths):
            read_image_file_into(path, size, images[index])

    def write():
        with tempfile.NamedTemporaryFile(dir=root.parent) as handle:
            for start in range(0, len(images), 256):
                handle.write(images[start : start + 256].data)
            handle.flush()

    def statistics():
        for start in range(0, len(images), 64):
            PixelMoments.of(images[start : start + 64])
        for start in range(0, len(images), 256):
            images[start : start + 256].sum(axis=0, dtype=np.uint16)

    def listing():
        folders = class_folders(root)
        tree_records(root, {folder.name: label for label, folder in enumerate(folders)})

    steps = (decode, listing, write, statistics)
    return tuple(best_of(REPEATS, lambda step=step: timed(step)) / len(paths) for step in steps)


def best_of(repeats: int, function) -> float:
    """The fastest of a few runs: this machine's two cores are shared with other work."""
    return min(function() for _ in range(repeats))


def spin(iterations: int) -> int:
    total = 0
    for value in range(iterations):
        total += value * value % 7
    return total


def machine_scaling(workers: int, iterations: int = 3_000_000) -> float:
    """Throughput of `workers` processes over one, on pure-Python arithmetic: the
    fastest serial run against the fastest parallel one, in alternating rounds."""
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        rounds = [
            (timed(lambda: spin(iterations)), timed(lambda: pool.map(spin, [iterations] * workers)))
            for _ in range(REPEATS)
        ]
    serial, parallel = (min(column) for column in zip(*rounds, strict=True))
    return workers * serial / parallel


def measure(name: str, root: Path, count: int, size: int, workers: int, scaling: float) -> None:
    def build(processes):
        output = Path(tempfile.mkdtemp(dir=root.parent))
        seconds = timed(
            lambda: build_folder(
                output, source=root, image_size=size, workers=processes, overwrite=True
            )
        )
        # Deleted at once, so that no run pays for writing back an earlier run's files.
        shutil.rmtree(output)
        return seconds

    # Rounds of all three, best of each: this machine is shared, and a slow spell
    # then slows one run of each rather than all runs of one.
    rounds = [(build(1), build(workers), decode_limit(root, size, workers)) for _ in range(REPEATS)]
    serial, parallel, limit = (min(column) for column in zip(*rounds, strict=True))
    decode, listing, write, statistics = ceiling(root, size)
    speedup = serial / parallel
    print(f"\n{name}: {count} JPEGs -> {size}x{size}, {workers} workers")
    print(f"  serial build     {count / serial:8.0f} images/s")
    print(f"  parallel build   {count / parallel:8.0f} images/s")
    print(f"  decode limit     {count / limit:8.0f} images/s (parallel decode and resize only)")
    print(f"  parallel build / decode limit: {limit / parallel:.0%} (target >= 90%)")
    extra = listing + write + statistics
    print(
        f"  ceiling: decode {decode * 1e6:.0f} us; listing {listing * 1e6:.1f}, write "
        f"{write * 1e6:.1f}, statistics {statistics * 1e6:.1f} us per image -> at most "
        f"{decode / (decode + extra):.0%} of the decode limit when the workers fill every core"
    )
    print(
        f"  speed-up over serial {speedup:.2f}x = {speedup / scaling:.0%} of the machine's "
        f"{scaling:.2f}x (target >= 85%)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=5000, help="64x64 JPEGs")
    parser.add_argument("--large", type=int, default=400, help="500x375 JPEGs")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    scaling = machine_scaling(args.workers)
    print(f"machine scaling on pure compute, {args.workers} processes: {scaling:.2f}x")
    with tempfile.TemporaryDirectory() as scratch:
        small, large = Path(scratch) / "small", Path(scratch) / "large"
        write_jpegs(small, args.small, 64, 64, seed=0)
        write_jpegs(large, args.large, 375, 500, seed=1)
        measure("Tiny ImageNet-like", small, args.small, 64, args.workers, scaling)
        measure("ImageNet-like", large, args.large, 256, args.workers, scaling)


if __name__ == "__main__":
    main()
