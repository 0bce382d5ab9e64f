"""Data larger than memory: the loader out of core, and the builder at growing sizes.

    .venv/bin/python bench/scale.py [--gigabytes G] [--batches N] [--tree-sizes 10000,50000,100000]
        [--scratch DIR] [--skip-split] [--keep-page-cache] [--rounds 3]

(a) Writes one split of random 64x64 images (uint8, as the builder writes them) of
`--gigabytes` (default: this machine's memory and a quarter more, so the page cache
cannot hold it), then, each in a process of its own with its peak RSS and the page
cache dropped before each, in 3 alternating rounds (a shared disk's pace drifts):
  - shuffled, augmented batches (random crop and flip) from HDF5DatasetGenerator
    with storage = "disk": the first `--batches` batches of an epoch (default: the
    whole epoch);
  - a sequential read of as many images through h5py, chunk after chunk, as a user
    would read the file;
  - a sequential read of as many bytes with os.pread, 8 MiB at a time: the pace of
    one reader on this disk, without h5py.
  The median ratio to each is the figure. Goal: at least 50 %.
(b) Builds image-folder trees of generated JPEGs (10 classes, 64x64, sizes from
`--tree-sizes`) through build_dataset.py (--dataset folder --image-size 64: stored at the size they
have) in 3 alternating rounds,
the trees synced to disk and the page cache dropped before each build, and reports
the median seconds per image and the build's peak RSS for each size, and what each
further image costs from one size to the next (a build's fixed start-up weighs most
on the smallest). Goals: time per image constant within 10 % across the sizes, peak
RSS flat.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads

import numpy as np  # noqa: E402

IMAGE_SIDE = 64
BATCH_SIZE = 128
# Images written per call: 2048 x 12 KiB = 24 MiB, a bounded amount of memory.
WRITE_BLOCK = 2048
# Alternating rounds of the measurements (see out_of_core and trees).
ROUNDS = 3


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_split(path: Path, gigabytes: float) -> int:
    """A complete split of random images of `gigabytes`; returns its image count."""
    from pipeline.datasets.hdf5_writer import SplitWriter

    count = max(WRITE_BLOCK, int(gigabytes * 1024**3 / (IMAGE_SIDE * IMAGE_SIDE * 3)))
    rng = np.random.default_rng(0)
    shape = (IMAGE_SIDE, IMAGE_SIDE, 3)
    names = [f"class_{index}" for index in range(10)]
    with SplitWriter(path, image_shape=shape, class_names=names, split="train",
                     source="bench/scale.py") as writer:  # fmt: skip
        for first in range(0, count, WRITE_BLOCK):
            rows = min(WRITE_BLOCK, count - first)
            writer.add(
                rng.integers(0, 256, (rows, *shape), dtype=np.uint8),
                rng.integers(0, 10, rows),
            )
        writer.finish((127.5,) * 3, (73.9,) * 3)
    return count


def sequential_read(path: Path, count: int | None = None) -> tuple[float, float]:
    """Images/s of reading `count` images (default: all) chunk after chunk from the
    middle of the file, and peak RSS."""
    import h5py

    start, served = time.perf_counter(), 0
    with h5py.File(path, "r") as handle:
        images = handle["images"]
        total = images.shape[0]
        count = total if count is None else min(count, total)
        step = images.chunks[0] * 64
        first_row = (total - count) // 2 // images.chunks[0] * images.chunks[0]
        for first in range(first_row, first_row + count, step):
            served += len(images[first : min(first + step, first_row + count)])
    return served / (time.perf_counter() - start), peak_rss_mib()


def raw_sequential_read(path: Path, count: int) -> tuple[float, float]:
    """Images/s of reading the bytes of `count` images from the middle of the file with
    os.pread, 8 MiB at a time, and peak RSS."""
    image_bytes = IMAGE_SIDE * IMAGE_SIDE * 3
    total = min(count * image_bytes, path.stat().st_size)
    block = 8 << 20
    buffer = bytearray(block)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        start, offset = time.perf_counter(), (path.stat().st_size - total) // 2
        done = 0
        while done < total:
            done += os.preadv(descriptor, [memoryview(buffer)[: total - done]], offset + done)
        seconds = time.perf_counter() - start
    finally:
        os.close(descriptor)
    return total / image_bytes / seconds, peak_rss_mib()


def shuffled_epoch(path: Path, batches: int | None) -> tuple[float, float, int]:
    """Images/s of shuffled, augmented batches read from disk, peak RSS, batches served."""
    from pipeline.io import HDF5DatasetGenerator, LoaderOptions

    augment = [{"name": "random_crop", "size": 56}, {"name": "flip"}]
    options = LoaderOptions(
        batch_size=BATCH_SIZE, augment=augment, image_size=56, storage="disk", seed=0
    )
    generator = HDF5DatasetGenerator(path, options)
    total = generator.batches_per_epoch if batches is None else min(batches, len(generator))
    start, count = time.perf_counter(), 0
    for index in range(total):
        count += len(generator[index][0])
    return count / (time.perf_counter() - start), peak_rss_mib(), total


def write_tree(root: Path, count: int) -> None:
    """`count` JPEGs of 64x64 in 10 class folders: smooth gradients with noise, so each
    compresses as a photograph does, not as a flat colour."""
    import cv2

    rng = np.random.default_rng(count)
    ramp = np.linspace(0, 255, IMAGE_SIDE, dtype=np.float32)
    base = np.stack(np.meshgrid(ramp, ramp), axis=-1).mean(axis=-1)
    for index in range(count):
        folder = root / f"class_{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        noise = rng.normal(0, 20, (IMAGE_SIDE, IMAGE_SIDE, 3))
        image = np.clip(base[..., None] * rng.random(3) + noise, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), image)


def build_tree(root: Path, output: Path) -> tuple[float, float]:
    """Seconds of build_dataset.py on the tree, and the build's peak RSS."""
    command = [
        "/usr/bin/time", "-f", "%M", sys.executable, "build_dataset.py", "--dataset", "folder",
        "--source", str(root), "--output", str(output), "--val-fraction", "0.1",
        "--test-fraction", "0.1", "--image-size", str(IMAGE_SIDE),
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the build of {root} failed: {done.stderr.strip()}")
    seconds = time.perf_counter() - start
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kib / 1024


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (root only), so that a read starts from the disk
    and not from what writing the file left in memory."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


def in_child(function, *arguments):
    """Run `function` in a process of its own, so each phase has its own peak RSS."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(function, arguments)


def out_of_core(
    scratch: Path, gigabytes: float, batches: int | None, drop: bool, rounds: int
) -> None:
    path = scratch / "train.h5"
    start = time.perf_counter()
    count = in_child(write_split, path, gigabytes)
    size = path.stat().st_size / 1024**3
    print(
        f"split: {count} images of {IMAGE_SIDE}x{IMAGE_SIDE}, {size:.2f} GiB on disk "
        f"(memory {memory_bytes() / 1024**3:.1f} GiB), written in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    dropped = drop and drop_page_cache()
    print(
        "page cache dropped before each read"
        if dropped
        else "page cache kept: a file larger than memory keeps most reads on disk",
        flush=True,
    )
    # A shared disk's pace drifts by 2x within minutes: the two reads alternate, each
    # over as many images, and each round gives its own ratio.
    ratios, raw_ratios = [], []
    for round_number in range(1, rounds + 1):
        if dropped:
            drop_page_cache()
        shuffled, shuffled_rss, served = in_child(shuffled_epoch, path, batches)
        if dropped:
            drop_page_cache()
        sequential, sequential_rss = in_child(sequential_read, path, served * BATCH_SIZE)
        if dropped:
            drop_page_cache()
        raw, _ = in_child(raw_sequential_read, path, served * BATCH_SIZE)
        ratios.append(shuffled / sequential)
        raw_ratios.append(shuffled / raw)
        print(
            f"round {round_number}: sequential through h5py {sequential:.0f} img/s (peak RSS "
            f"{sequential_rss:.0f} MiB), raw sequential {raw:.0f} img/s, shuffled augmented "
            f"({served} batches of {BATCH_SIZE}) {shuffled:.0f} img/s (peak RSS "
            f"{shuffled_rss:.0f} MiB): {shuffled / sequential:.0%} and {shuffled / raw:.0%}",
            flush=True,
        )
    print(
        f"shuffled augmented epoch from disk: {statistics.median(ratios):.0%} of the "
        f"sequential read through h5py and {statistics.median(raw_ratios):.0%} of the raw "
        f"sequential read, the medians of {rounds} rounds (goal: at least 50%)",
        flush=True,
    )
    path.unlink()


def trees(scratch: Path, sizes: list[int], drop: bool, rounds: int) -> None:
    """Build a tree of each size, in `rounds` alternating rounds (the shared machine's pace
    drifts), the JPEGs synced to disk first and, with `drop`, the page cache dropped
    before each build: a build pays neither for the writeback of its input nor gets it
    from memory. Each size's figure is the median of its rounds."""
    roots = {size: scratch / f"tree_{size}" for size in sizes}
    for size, root in roots.items():
        write_tree(root, size)
    os.sync()
    seconds = {size: [] for size in sizes}
    peaks = {size: [] for size in sizes}
    for _ in range(rounds):
        for size, root in roots.items():
            if drop:
                drop_page_cache()
            output = scratch / f"built_{size}"
            elapsed, peak = build_tree(root, output)
            shutil.rmtree(output)
            seconds[size].append(elapsed)
            peaks[size].append(peak)
    for root in roots.values():
        shutil.rmtree(root)
    medians = {size: statistics.median(seconds[size]) for size in sizes}
    for size in sizes:
        rounds_text = " / ".join(f"{value:.1f}" for value in seconds[size])
        print(
            f"folder build of {size} JPEGs ({rounds_text} s): "
            f"{medians[size] / size * 1000:.3f} ms/image, peak RSS {max(peaks[size]):.0f} MiB",
            flush=True,
        )
    # A build's start-up (Python, imports, forking the decoders, committing) costs the
    # same at every size and weighs most on the smallest: the time each further image
    # costs, between one size and the next, is what the size can change.
    marginals = [
        (medians[large] - medians[small]) / (large - small)
        for small, large in zip(sizes, sizes[1:], strict=False)
    ]
    for (small, large), marginal in zip(
        zip(sizes, sizes[1:], strict=False), marginals, strict=True
    ):
        print(f"each image from {small} to {large}: {marginal * 1000:.3f} ms")
    per_image = [medians[size] / size for size in sizes]
    print(f"time per image: largest/smallest {max(per_image) / min(per_image):.2f}")
    if len(marginals) > 1:
        print(
            f"each further image: largest/smallest {max(marginals) / min(marginals):.2f} "
            f"(goal: within 1.10)"
        )
    peak_values = [max(peaks[size]) for size in sizes]
    print(f"peak RSS largest/smallest {max(peak_values) / min(peak_values):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_gigabytes = round(memory_bytes() * 1.25 / 1024**3, 1)
    parser.add_argument("--gigabytes", type=float, default=default_gigabytes)
    parser.add_argument("--batches", type=int, help="batches of the shuffled epoch timed")
    parser.add_argument("--tree-sizes", default="10000,50000,100000")
    parser.add_argument("--scratch", help="folder for the files (default: a temporary one)")
    parser.add_argument("--skip-split", action="store_true")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds")
    parser.add_argument(
        "--keep-page-cache", action="store_true", help="do not drop it before the reads"
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="scale_", dir=args.scratch))
    try:
        if not args.skip_split:
            out_of_core(
                scratch, args.gigabytes, args.batches, not args.keep_page_cache, args.rounds
            )
        if args.tree_sizes:
            sizes = [int(size) for size in args.tree_sizes.split(",")]
            trees(scratch, sizes, not args.keep_page_cache, args.rounds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
