"""Any `root/<class>/*` tree of images (ImageNet's train folder among them) into HDF5 splits.

Validation comes from a second tree with the same class folders, from a
folder of images plus a file naming each image's class (ImageNet's
validation ground truth comes that way), or is carved from train by fraction.
"""

import csv
import io
import os
from pathlib import Path

from pipeline.datasets.builder import ImageRecord, default_image_size, write_file_dataset
from pipeline.datasets.image_folders import class_folders, files_under, printable, require
from pipeline.datasets.source_files import read_source_text
from pipeline.datasets.splitting import carve_splits
from pipeline.errors import UserError

LAYOUT = "ROOT/<class name>/<image files>"
LABELS_FORMAT = (
    "one 'file,class' or 'file class' per line, or ImageNet's LOC_val_solution.csv "
    "(ImageId,PredictionString)"
)


def tree_records(root: Path, label_of: dict[str, int], skipped=None) -> list[ImageRecord]:
    """Every file of every class folder of `root`; a folder naming no known class, or
    holding no file, is an error. Links leaving `root` go to `skipped`."""
    records = []
    for folder in class_folders(root):
        if folder.name not in label_of:
            raise UserError(
                f"{folder} names no class of the train tree; known classes are its folders"
            )
        files = files_under(folder, root=root, skipped=skipped)
        if not files:
            raise UserError(f"class folder {printable(folder)} holds no file (layout: {LAYOUT})")
        records.extend(ImageRecord(path, label_of[folder.name]) for path in files)
    return records


def read_label_file(path: Path) -> dict[str, str]:
    """Map image file name (or stem) -> class name, from a CSV or whitespace-separated file."""
    require(path, LABELS_FORMAT)
    mapping = {}
    # A regular file, bounded in size and line length (a FIFO or /dev/zero is refused).
    text = read_source_text(path, "--val-labels")
    lines = io.StringIO(text, newline="")
    rows = (
        list(csv.reader(lines))
        if path.suffix.lower() == ".csv"
        else [line.split() for line in lines]
    )
    if rows and [cell.strip() for cell in rows[0][:2]] == ["ImageId", "PredictionString"]:
        # Kaggle's ImageNet file: the first word of PredictionString is the wnid.
        rows = [[row[0], row[1].split()[0]] for row in rows[1:] if len(row) > 1 and row[1].split()]
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) < 2:
            raise UserError(f"{path} line {number}: expected {LABELS_FORMAT}, got {row!r}")
        mapping[row[0].strip()] = row[1].strip()
    return mapping


def labelled_folder_records(
    folder: Path, labels_file: Path, label_of, skipped=None
) -> list[ImageRecord]:
    """Images of a flat folder, labelled through a label file (by file name or stem)."""
    class_of = read_label_file(labels_file)
    records = []
    for path in files_under(
        require(folder, "a folder of validation images"), root=folder, skipped=skipped
    ):
        name = os.path.basename(path)
        class_name = class_of.get(name, class_of.get(os.path.splitext(name)[0]))
        if class_name is None:
            raise UserError(f"{labels_file} gives no class for {name}")
        if class_name not in label_of:
            raise UserError(f"{labels_file}: class {class_name!r} of {name} is no train class")
        records.append(ImageRecord(path, label_of[class_name]))
    return records


def build(
    output_dir,
    *,
    source,
    val_source=None,
    val_labels=None,
    test_source=None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    image_size: int | None = None,
    encoding: str = "raw",
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Build a class-folder tree into `output_dir`; returns the build summary.

    `test_source` is a second tree with the same class folders whose images form the
    test split (as MNIST- or CIFAR-style PNG exports come: train/ and test/).

    `image_size` defaults to 256 for raw splits; JPEG-encoded ones keep their
    original size (and bytes) unless it is given.
    """
    if source is None:
        raise UserError(f"pass --source with the train folder ({LAYOUT})")
    root = require(Path(source), LAYOUT)
    class_names = [folder.name for folder in class_folders(root)]
    if not class_names:
        raise UserError(f"{root} has no class sub-folders (layout: {LAYOUT})")
    label_of = {name: label for label, name in enumerate(class_names)}
    skipped = []
    train = tree_records(root, label_of, skipped)
    if val_source is not None and val_fraction:
        raise UserError("give either a validation folder or a validation fraction, not both")
    if test_source is not None and test_fraction:
        raise UserError("give either a test folder or a test fraction, not both")
    records = carve_splits(train, val_fraction, test_fraction, seed)
    if val_labels is not None:
        if val_source is None:
            raise UserError("--val-labels needs --val-source, the folder of validation images")
        records["val"] = labelled_folder_records(
            Path(val_source), Path(val_labels), label_of, skipped
        )
    elif val_source is not None:
        val_root = require(Path(val_source), LAYOUT)
        if not class_folders(val_root):
            raise UserError(
                f"{val_root} has no class sub-folders; for a flat folder of images also pass "
                f"--val-labels FILE ({LABELS_FORMAT})"
            )
        records["val"] = tree_records(val_root, label_of, skipped)
    if test_source is not None:
        records["test"] = tree_records(require(Path(test_source), LAYOUT), label_of, skipped)
    return write_file_dataset(
        output_dir,
        records,
        class_names=class_names,
        source=f"folder:{printable(root)}",
        image_size=default_image_size(image_size, encoding),
        encoding=encoding,
        workers=workers,
        seed=seed,
        overwrite=overwrite,
        listing_skips=skipped,
    )
