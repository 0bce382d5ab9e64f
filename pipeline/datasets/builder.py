"""Writing a whole data set (all its splits) into a dataset directory.

Two sources feed the same writer: images already in memory (digits, CIFAR)
and lists of image files (Tiny ImageNet, Caltech-256, folders, ImageNet),
which are decoded on all cores and streamed into the file in batches, so
memory stays bounded whatever the data set's size. The train split is
written first: its statistics are computed while it is written and then
copied into every split.
"""

import dataclasses
import functools
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.datasets.hdf5_format import SplitWriter, split_path, write_mean_json
from pipeline.datasets.images import (
    BadImage,
    encode_jpeg,
    is_jpeg,
    read_image_file,
    resize_and_center_crop,
)
from pipeline.datasets.statistics import ImageStatistics, PixelMoments
from pipeline.errors import UserError

SPLIT_ORDER = ("train", "val", "test")
SUMMARY_FILE = "build_summary.json"
# Images per HDF5 append and per round of parallel decoding: bounds memory to a
# few batches of decoded images, whatever the data set's size.
WRITE_BATCH = 256


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One source image file and its class id."""

    path: Path
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
            moments = [PixelMoments.of(batch_images)]
            yield batch_images, labels[start : start + WRITE_BATCH], moments, []

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
) -> dict:
    """Decode image files on `workers` processes (default: all cores) and write the splits.

    Raw splits resize every image (shorter side to `image_size`, centre crop);
    JPEG-encoded ones keep the original JPEG bytes (or re-encode other formats,
    and resized images when `image_size` is set). Each split is stored in a
    seeded random order, so that a loader reading contiguous blocks still sees
    mixed classes. Unusable files are skipped and reported.
    """
    if encoding == "raw" and image_size is None:
        raise ValueError("raw splits need an image_size")
    workers = workers or os.cpu_count() or 1
    rng = np.random.default_rng(seed)
    ordered = {
        split: [items[i] for i in rng.permutation(len(items))] for split, items in records.items()
    }
    prepare = functools.partial(prepare_image, image_size=image_size, encoding=encoding)

    def batches(split):
        yield from _prepare_in_batches(ordered[split], prepare, workers, encoding)

    image_shape = (image_size, image_size, 3) if encoding == "raw" else None
    return _write_dataset(
        output_dir,
        {split: len(items) for split, items in ordered.items()},
        batches,
        image_shape=image_shape,
        encoding=encoding,
        class_names=class_names,
        source=source,
        overwrite=overwrite,
    )


def prepare_image(record: ImageRecord, *, image_size, encoding):
    """Read one file into what the split stores: (payload, PixelMoments of its pixels).

    Runs in the worker processes, so the statistics are computed in parallel
    too; for JPEG payloads only the moments (a few numbers) travel back, not
    the decoded image. A file that cannot be used yields (None, reason).
    """
    try:
        data, image = read_image_file(record.path)
    except BadImage as error:
        return None, error.reason
    if image_size is not None:
        image = resize_and_center_crop(image, image_size)
    if encoding == "raw":
        return image, PixelMoments.of(image)
    keep_original = image_size is None and is_jpeg(data)
    return (data if keep_original else encode_jpeg(image)), PixelMoments.of(image)


def _prepare_in_batches(records, prepare, workers, encoding) -> Iterator[tuple]:
    """Yield (payloads, labels, moments, skipped) per batch of records, in record order."""
    batches = [
        records[start : start + WRITE_BATCH] for start in range(0, len(records), WRITE_BATCH)
    ]
    if workers <= 1:
        for batch in batches:
            yield _collect(batch, [prepare(record) for record in batch], encoding)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        # Double buffering: the workers decode batch k+1 while batch k is written.
        pending = pool.map_async(prepare, batches[0], chunksize=8) if batches else None
        for index, batch in enumerate(batches):
            results = pending.get()
            if index + 1 < len(batches):
                pending = pool.map_async(prepare, batches[index + 1], chunksize=8)
            yield _collect(batch, results, encoding)


def _collect(batch, results, encoding):
    payloads, labels, moments, skipped = [], [], [], []
    for record, (payload, moments_or_reason) in zip(batch, results, strict=True):
        if payload is None:
            skipped.append((str(record.path), moments_or_reason))
            continue
        payloads.append(payload)
        labels.append(record.label)
        moments.append(moments_or_reason)
    if encoding == "raw" and payloads:
        payloads = np.stack(payloads)
    return payloads, np.asarray(labels, dtype=np.int32), moments, skipped


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
) -> dict:
    if "train" not in sizes:
        raise ValueError("a data set needs a train split for its statistics")
    output_dir = prepare_output_dir(output_dir, overwrite)
    statistics = ImageStatistics()
    results = {}
    for split in [name for name in SPLIT_ORDER if name in sizes]:
        results[split] = _write_split(
            output_dir, split, sizes[split], batches(split), statistics,
            update_statistics=split == "train", image_shape=image_shape, encoding=encoding,
            class_names=class_names, source=source,
        )  # fmt: skip
        if results[split].num_written == 0:
            raise UserError(f"no usable image in the {split} split of {source}")
    write_mean_json(output_dir, statistics.mean)
    summary = _summary(output_dir, source, class_names, statistics, results)
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


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
        for payloads, labels, moments, skipped in batches:
            result.skipped.extend(skipped)
            progress.update(len(labels) + len(skipped))
            if not len(labels):
                continue
            writer.add(payloads, labels)
            if update_statistics:
                statistics.add_moments(
                    _sum_moments(moments),
                    payloads.sum(axis=0, dtype=np.float64) if encoding == "raw" else None,
                    num_images=len(labels),
                )
        result.num_written = writer.num_written
        if result.num_written:
            writer.finish(
                statistics.mean,
                statistics.std,
                covariance=statistics.covariance,
                mean_image=statistics.mean_image,
            )
    return result


def _sum_moments(moments: list[PixelMoments]) -> PixelMoments:
    total = PixelMoments()
    for item in moments:
        total.add(item)
    return total


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
