"""Writing a whole data set (all its splits) into a dataset directory.

Two sources feed the same writer: images already in memory (digits, CIFAR)
and lists of image files (Tiny ImageNet, Caltech-256, folders, ImageNet),
which are decoded on all cores and streamed into the file in batches, so
memory stays bounded whatever the data set's size. The train split is
written first: its statistics are computed while it is written and then
copied into every split.
"""

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.datasets.hdf5_commit import (
    COMMITTED,
    STAGING_DIR,
    commit_staged_build,
    finish_committed_build,
    stamp_build_id,
)
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_writer import SplitWriter, write_mean_json
from pipeline.datasets.parallel_decode import (
    WRITE_BATCH,
    PreparedBatch,
    decoder,
    prepared_batches,
)
from pipeline.datasets.statistics import ImageStatistics, PixelMoments
from pipeline.errors import UserError

SPLIT_ORDER = ("train", "val", "test")
SUMMARY_FILE = "build_summary.json"
DEFAULT_IMAGE_SIZE = 256


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One source image file and its class id."""

    path: str
    label: int


@dataclasses.dataclass
class SplitResult:
    """What writing one split produced."""

    num_written: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)


def prepare_output_dir(output_dir: str | Path, overwrite: bool) -> Path:
    """Create the dataset directory; refuse to replace existing splits unless `overwrite`."""
    output_dir = Path(output_dir)
    existing = [split_path(output_dir, split) for split in SPLIT_ORDER]
    existing = [path for path in existing if path.exists()]
    if existing and not overwrite:
        names = ", ".join(path.name for path in existing)
        raise UserError(
            f"{output_dir} already holds {names}; pass --overwrite to replace them "
            f"or choose another --output"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def write_in_memory_dataset(
    output_dir: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    class_names: list[str],
    source: str,
    overwrite: bool = False,
) -> dict:
    """Write splits held in memory (name -> (uint8 RGB images, labels)); return the summary."""

    def batches(split):
        images, labels = splits[split]
        for start in range(0, len(images), WRITE_BATCH):
            batch_images = images[start : start + WRITE_BATCH]
            yield PreparedBatch(
                batch_images, labels[start : start + WRITE_BATCH], PixelMoments.of(batch_images), []
            )

    sizes = {split: len(labels) for split, (_, labels) in splits.items()}
    return _write_dataset(
        output_dir,
        sizes,
        batches,
        image_shape=next(iter(splits.values()))[0].shape[1:],
        encoding="raw",
        class_names=class_names,
        source=source,
        overwrite=overwrite,
    )


def default_image_size(image_size: int | None, encoding: str) -> int | None:
    """The stored size: as asked; else 256 (the papers' ImageNet size) for raw splits, and the
    original size for JPEG-encoded ones."""
    if image_size is not None:
        return image_size
    return DEFAULT_IMAGE_SIZE if encoding == "raw" else None


def write_file_dataset(
    output_dir: str | Path,
    records: dict[str, list[ImageRecord]],
    *,
    class_names: list[str],
    source: str,
    image_size: int | None,
    encoding: str = "raw",
    workers: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    listing_skips=(),
) -> dict:
    """Decode image files on `workers` processes (default: all cores) and write the splits.

    Raw splits resize every image (shorter side to `image_size`, centre crop);
    JPEG-encoded ones keep the original JPEG bytes (or re-encode other formats,
    and resized images when `image_size` is set). Each split is stored in a
    seeded random order, so that a loader reading contiguous blocks still sees
    mixed classes. Unusable files are skipped and reported, with `listing_skips`,
    (path, reason) of files left out when the source was listed.
    """
    if image_size is not None and image_size < 1:
        raise UserError(f"the image size must be at least 1 pixel, got {image_size}")
    if encoding == "raw" and image_size is None:
        raise ValueError("raw splits need an image_size")
    workers = workers or os.cpu_count() or 1
    rng = np.random.default_rng(seed)
    ordered = {
        split: [items[i] for i in rng.permutation(len(items))] for split, items in records.items()
    }
    with decoder(ordered, image_size=image_size, encoding=encoding, workers=workers) as (
        submit,
        slots,
    ):
        return _write_dataset(
            output_dir,
            {split: len(items) for split, items in ordered.items()},
            lambda split: prepared_batches(split, ordered[split], submit, slots),
            image_shape=(image_size, image_size, 3) if encoding == "raw" else None,
            encoding=encoding,
            class_names=class_names,
            source=source,
            overwrite=overwrite,
            listing_skips=listing_skips,
        )


def _write_dataset(
    output_dir,
    sizes: dict[str, int],
    batches: Callable[[str], Iterator[tuple]],
    *,
    image_shape,
    encoding: str,
    class_names,
    source: str,
    overwrite: bool,
    listing_skips=(),
) -> dict:
    if "train" not in sizes:
        raise ValueError("a data set needs a train split for its statistics")
    # A build killed while moving its files into place is finished before anything else.
    finish_committed_build(output_dir)
    output_dir = prepare_output_dir(output_dir, overwrite)
    # Every file is written into a hidden staging folder and moved into place only
    # when all splits are complete: a build that dies half way leaves the previous
    # data set as it was, and one that dies while moving is finished by the next
    # reader (COMMITTED), so no reader ever sees a new train.h5 beside an old test.h5.
    staging = output_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        statistics = ImageStatistics()
        results = {}
        for split in [name for name in SPLIT_ORDER if name in sizes]:
            results[split] = _write_split(
                staging, split, sizes[split], batches(split), statistics,
                update_statistics=split == "train", image_shape=image_shape, encoding=encoding,
                class_names=class_names, source=source,
            )  # fmt: skip
            if results[split].num_written == 0:
                raise UserError(f"no usable image in the {split} split of {source}")
        # Files left out when listing the source count as skipped from the train split.
        results["train"].skipped.extend(listing_skips)
        write_mean_json(staging, statistics.mean)
        summary = _summary(output_dir, source, class_names, statistics, results)
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        _move_into_place(staging, output_dir)
    finally:
        # A committed build stays staged until it is wholly in place.
        if not (staging / COMMITTED).exists():
            shutil.rmtree(staging, ignore_errors=True)
    return summary


def _move_into_place(staging: Path, output_dir: Path) -> None:
    """Replace the data set in output_dir by the staged one, dropping splits it no longer has."""
    stamp_build_id([split_path(staging, split) for split in SPLIT_ORDER
                    if split_path(staging, split).exists()])  # fmt: skip
    files = sorted(path.name for path in staging.iterdir())
    stale = [
        split_path("", split).name
        for split in SPLIT_ORDER
        if not split_path(staging, split).exists()
    ]
    commit_staged_build(output_dir, files, stale)


def _write_split(
    output_dir, split, total, batches, statistics, *, update_statistics, image_shape, encoding,
    class_names, source,
) -> SplitResult:  # fmt: skip
    """Stream one split's batches into its file; the train split also feeds the statistics."""
    result = SplitResult()
    with (
        SplitWriter(
            split_path(output_dir, split),
            image_shape=image_shape,
            class_names=class_names,
            split=split,
            source=source,
            encoding=encoding,
        ) as writer,
        tqdm(total=total, desc=f"writing {split}", unit="img") as progress,
    ):
        for batch in batches:
            result.skipped.extend(batch.skipped)
            progress.update(len(batch.labels) + len(batch.skipped))
            if not len(batch.labels):
                continue
            writer.add(batch.payloads, batch.labels)
            if update_statistics:
                image_sum = None
                if encoding == "raw":
                    image_sum = _exact_image_sum(batch.payloads)
                statistics.add_moments(batch.moments, image_sum, num_images=len(batch.labels))
        result.num_written = writer.num_written
        if result.num_written:
            writer.finish(
                statistics.mean,
                statistics.std,
                covariance=statistics.covariance,
                mean_image=statistics.mean_image,
            )
    return result


def _exact_image_sum(images: np.ndarray) -> np.ndarray:
    """The per-pixel sum of a batch in the narrowest exact integer type: up to 257
    images of 0-255 fit uint16 (257 * 255 = 65535), which sums twice as fast as uint32."""
    return images.sum(axis=0, dtype=np.uint16 if len(images) <= 257 else np.uint32)


def _summary(output_dir, source, class_names, statistics, results) -> dict:
    skipped_by_reason: dict[str, list[str]] = {}
    for result in results.values():
        for path, reason in result.skipped:
            skipped_by_reason.setdefault(reason, []).append(path)
    return {
        "dataset_dir": str(output_dir),
        "source": source,
        "num_classes": len(class_names),
        "images_per_split": {split: result.num_written for split, result in results.items()},
        "skipped_per_split": {split: len(result.skipped) for split, result in results.items()},
        "skipped": skipped_by_reason,
        "mean": statistics.mean.tolist(),
        "std": statistics.std.tolist(),
    }
