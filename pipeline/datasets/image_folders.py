"""Listing image files in class folders (the layout of Caltech-256, Tiny ImageNet, ImageNet)."""

import os
from pathlib import Path

from pipeline.errors import UserError


def require(path: Path, layout: str) -> Path:
    """Return `path` if it exists, else a UserError naming it and the expected layout."""
    if not path.exists():
        raise UserError(f"expected {path} (layout: {layout})")
    return path


def files_under(folder: Path, recursive: bool = True) -> list[str]:
    """Every regular, non-hidden file in (and, if `recursive`, below) `folder`, sorted.

    Sorted, so builds are reproducible. Plain strings from os.walk rather than
    Path objects from Path.rglob: an ImageNet train folder holds 1.28 million
    files, and each path is handed to a worker process.
    """
    found = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        found.extend(os.path.join(directory, name) for name in names if not name.startswith("."))
        if not recursive:
            break
    return sorted(found)


def class_folders(root: Path) -> list[Path]:
    """The non-hidden sub-folders of `root`, sorted by name."""
    if not root.is_dir():
        raise UserError(f"{root} is not a folder of class sub-folders")
    return sorted(
        path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")
    )
