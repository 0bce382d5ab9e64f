"""CIFAR-10 and CIFAR-100 as HDF5 splits: the entry point that build_dataset.py calls.

The download is read by cifar (safely: see its docstring) and decoded by
cifar_batches; this module checks the options, carves the validation split out
of train and writes the splits.
"""

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.datasets.builder import write_in_memory_dataset
from pipeline.datasets.cifar import DOWNLOAD_PAGE, LAYOUTS, CifarLayout, one_line, read_source
from pipeline.datasets.cifar_batches import decode_class_names, join_batches, read_batch
from pipeline.errors import UserError

# Without --val-size, this share of train becomes the validation split (5,000 of 50,000).
DEFAULT_VAL_SHARE = 0.1


def check_options(dataset: str, label_mode: str, val_size, source) -> CifarLayout:
    """Refuse bad options before touching any file; returns the data set's layout."""
    if dataset not in LAYOUTS:
        raise UserError(f"unknown CIFAR data set {dataset!r}; choose one of {', '.join(LAYOUTS)}")
    layout = LAYOUTS[dataset]
    if label_mode not in layout.label_keys:
        raise UserError(
            f"label mode {label_mode!r} does not exist for {dataset}; "
            f"choose one of {', '.join(layout.label_keys)}"
        )
    if val_size is not None and (
        isinstance(val_size, bool) or not isinstance(val_size, int | np.integer) or val_size < 0
    ):
        raise UserError(f"--val-size must be a whole number >= 0, got {val_size!r}")
    if source is None or str(source) == "":
        raise UserError(
            f"{dataset} is built from the official download ({DOWNLOAD_PAGE}); pass --source "
            f"with the downloaded archive or folder: {layout.describe()}"
        )
    return layout


def default_val_size(labels: np.ndarray) -> int:
    """The validation images carved when --val-size is not given: a tenth of train (the
    papers' 45k/5k split of CIFAR's 50,000), and at least one image per class."""
    return max(round(DEFAULT_VAL_SHARE * len(labels)), len(np.unique(labels)))


def carve_validation(images: np.ndarray, labels: np.ndarray, val_size: int, seed: int) -> dict:
    """Split `val_size` images off train, stratified by class; returns train and val."""
    if val_size >= len(images):
        raise UserError(
            f"--val-size {val_size} must be smaller than the {len(images)} training images"
        )
    try:
        train_images, val_images, train_labels, val_labels = train_test_split(
            images, labels, test_size=val_size, stratify=labels, random_state=seed
        )
    except ValueError as error:
        raise UserError(
            f"--val-size {val_size} cannot be carved stratified from {len(images)} training "
            f"images of {len(np.unique(labels))} classes: {one_line(error)} (--val-size 0 "
            f"keeps all of train and builds no validation split)"
        ) from None
    return {"train": (train_images, train_labels), "val": (val_images, val_labels)}


def build(
    output_dir,
    *,
    source,
    dataset: str = "cifar10",
    label_mode: str = "fine",
    val_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Build CIFAR-10 or CIFAR-100 from the official download into `output_dir`.

    `source` is the archive, its extracted folder or the folder that holds it.
    `label_mode` picks CIFAR-100's "fine" (100) or "coarse" (20) classes.
    `val_size` > 0 carves a stratified validation split of that many images out
    of train (seeded by `seed`); 0 keeps all of train, in file order; None (the
    default) carves a tenth of train: 5,000 images of the official 50,000.
    Returns the build summary of `write_in_memory_dataset`.
    """
    layout = check_options(dataset, label_mode, val_size, source)
    labels_key, names_key = layout.label_keys[label_mode]
    source_path = Path(source).absolute()
    files = read_source(source_path, layout)
    class_names = decode_class_names(files[layout.meta_file], names_key)
    train = join_batches(
        [read_batch(files[name], labels_key, len(class_names)) for name in layout.train_files]
    )
    test = join_batches([read_batch(files[layout.test_file], labels_key, len(class_names))])
    splits = {"train": train}
    if val_size is None:
        val_size = default_val_size(train[1])
    if val_size > 0:
        splits = carve_validation(*train, int(val_size), seed)
    splits["test"] = test
    return write_in_memory_dataset(
        output_dir,
        splits,
        class_names=class_names,
        source=f"{dataset}:{source_path}",
        overwrite=overwrite,
    )
