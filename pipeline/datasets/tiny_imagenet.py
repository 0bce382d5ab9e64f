"""Tiny ImageNet (the `tiny-imagenet-200` folder) into train/val/test HDF5 splits.

Class ids follow the sorted wnids; readable names come from words.txt. The
official validation images are the val split; the official test images carry
no labels, so the test split is carved from train: 50 images per class,
stratified, with a fixed seed (the reference protocol).
"""

import os
from pathlib import Path

import numpy as np

from pipeline.datasets.builder import ImageRecord, write_file_dataset
from pipeline.datasets.image_folders import files_under, require
from pipeline.datasets.source_files import read_source_text
from pipeline.datasets.splitting import carve_per_class
from pipeline.errors import UserError

LAYOUT = (
    "tiny-imagenet-200/{wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG, val/val_annotations.txt}"
)
FOLDER_NAME = "tiny-imagenet-200"


def find_root(source) -> Path:
    """The folder holding wnids.txt: `source` itself or its tiny-imagenet-200 sub-folder."""
    source = Path(source)
    for candidate in (source, source / FOLDER_NAME):
        if (candidate / "wnids.txt").is_file():
            return candidate
    return require(source / "wnids.txt", LAYOUT)


def read_wnids(root: Path) -> list[str]:
    lines = read_source_text(require(root / "wnids.txt", LAYOUT), "Tiny ImageNet file").split()
    return sorted(set(lines))


def read_class_names(root: Path, wnids: list[str]) -> list[str]:
    """The first synonym of each wnid in words.txt, made unique with the wnid where it repeats."""
    words = {}
    words_file = require(root / "words.txt", LAYOUT)
    for line in read_source_text(words_file, "Tiny ImageNet file").splitlines():
        wnid, _, names = line.partition("\t")
        words[wnid.strip()] = names.split(",")[0].strip()
    first_names = [words.get(wnid) or wnid for wnid in wnids]
    return [
        f"{name} ({wnid})" if first_names.count(name) > 1 else name
        for name, wnid in zip(first_names, wnids, strict=True)
    ]


def train_records(root: Path, wnids: list[str], skipped=None) -> list[ImageRecord]:
    records = []
    for label, wnid in enumerate(wnids):
        folder = require(root / "train" / wnid / "images", LAYOUT)
        files = files_under(folder, root=root, skipped=skipped)
        records.extend(ImageRecord(path, label) for path in files)
    return records


def val_records(root: Path, wnids: list[str]) -> list[ImageRecord]:
    """Validation images with their labels from val_annotations.txt (file, wnid, box)."""
    annotations = require(root / "val" / "val_annotations.txt", LAYOUT)
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    records = []
    text = read_source_text(annotations, "Tiny ImageNet file")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise UserError(
                f"{annotations} line {number}: expected 'file<TAB>wnid<TAB>box' with a wnid "
                f"from wnids.txt, got {line!r}"
            )
        name = fields[0]
        # A file name, never a path: an annotation must not reach outside the source.
        if not name or os.path.basename(name) != name or name in (".", ".."):
            raise UserError(
                f"{annotations} line {number}: {name!r} is not a file name of val/images"
            )
        records.append(ImageRecord(str(root / "val" / "images" / name), label_of[fields[1]]))
    return records


def build(
    output_dir,
    *,
    source,
    seed: int = 0,
    test_per_class: int = 50,
    image_size: int = 64,
    workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Build Tiny ImageNet from its folder into `output_dir`; returns the build summary."""
    if source is None:
        raise UserError("pass --source with the tiny-imagenet-200 folder")
    root = find_root(source)
    wnids = read_wnids(root)
    class_names = read_class_names(root, wnids)
    skipped = []
    train = train_records(root, wnids, skipped)
    rng = np.random.default_rng(seed)
    test_indices, train_indices = carve_per_class(
        [record.label for record in train], lambda _size: test_per_class, rng, "test"
    )
    records = {
        "train": [train[i] for i in train_indices],
        "val": val_records(root, wnids),
        "test": [train[i] for i in test_indices],
    }
    return write_file_dataset(
        output_dir,
        records,
        class_names=class_names,
        source=f"tiny-imagenet:{root}",
        image_size=image_size,
        workers=workers,
        seed=seed,
        overwrite=overwrite,
        listing_skips=skipped,
    )
