"""Caltech-256 (`256_ObjectCategories/NNN.name/*.jpg`) into HDF5 splits.

Class ids follow the folder numbers (001.ak47 is class 0, named "ak47");
257.clutter is background, excluded unless asked for. Validation (and
optionally test) images are carved from each class with a fixed seed. Images
are either resized at build time (shorter side to S, centre crop S x S) or
kept JPEG-encoded for random-resized crops at training time.
"""

import re
from pathlib import Path

from pipeline.datasets.builder import ImageRecord, default_image_size, write_file_dataset
from pipeline.datasets.image_folders import class_folders, files_under, printable, require
from pipeline.datasets.splitting import carve_splits
from pipeline.errors import UserError

LAYOUT = "256_ObjectCategories/NNN.name/*.jpg (for example 001.ak47/001_0001.jpg)"
FOLDER_NAME = "256_ObjectCategories"
CLASS_FOLDER = re.compile(r"^(\d{3})\.(.+)$")
CLUTTER = "clutter"


def find_root(source) -> Path:
    source = Path(source)
    if (source / FOLDER_NAME).is_dir():
        return source / FOLDER_NAME
    return require(source, LAYOUT)


def list_classes(root: Path, include_clutter: bool) -> list[tuple[str, Path]]:
    """(class name, folder) pairs in folder-number order."""
    classes = []
    for folder in class_folders(root):
        match = CLASS_FOLDER.match(folder.name)
        if not match:
            continue
        name = match.group(2)
        if name == CLUTTER and not include_clutter:
            continue
        classes.append((int(match.group(1)), name, folder))
    if not classes:
        raise UserError(f"no class folder like 001.ak47 in {root} (layout: {LAYOUT})")
    return [(name, folder) for _number, name, folder in sorted(classes)]


def build(
    output_dir,
    *,
    source,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    include_clutter: bool = False,
    image_size: int | None = None,
    encoding: str = "raw",
    workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Build Caltech-256 into `output_dir`; returns the build summary.

    `image_size` defaults to 256 for raw splits; JPEG-encoded ones keep their
    original size (and bytes) unless it is given. Only the files directly in
    a class folder count (the official layout; a few real class folders hold
    a sub-folder of extra copies).
    """
    if source is None:
        raise UserError("pass --source with the 256_ObjectCategories folder")
    root = find_root(source)
    classes = list_classes(root, include_clutter)
    skipped = []
    records = [
        ImageRecord(path, label)
        for label, (_name, folder) in enumerate(classes)
        for path in files_under(folder, recursive=False, root=root, skipped=skipped)
    ]
    return write_file_dataset(
        output_dir,
        carve_splits(records, val_fraction, test_fraction, seed),
        class_names=[name for name, _folder in classes],
        source=f"caltech256:{printable(root)}",
        image_size=default_image_size(image_size, encoding),
        encoding=encoding,
        workers=workers,
        seed=seed,
        overwrite=overwrite,
        listing_skips=skipped,
    )
