"""Listing image files in class folders (the layout of Caltech-256, Tiny ImageNet, ImageNet)."""

import os
from pathlib import Path

from pipeline.errors import UserError

# Why a listed file was skipped (beside the decoding reasons of pipeline.datasets.images).
LINK_OUTSIDE = "a link to a file outside the source folder"


def require(path: Path, layout: str) -> Path:
    """Return `path` if it exists, else a UserError naming it and the expected layout."""
    if not path.exists():
        raise UserError(f"expected {path} (layout: {layout})")
    return path


def files_under(folder: Path, recursive: bool = True, *, root=None, skipped=None) -> list[str]:
    """Every non-hidden file in (and, if `recursive`, below) `folder`, sorted.

    Sorted, so builds are reproducible. Plain strings from os.walk rather than
    Path objects from Path.rglob: an ImageNet train folder holds 1.28 million
    files, and each path is handed to a worker process. Links to folders are not
    followed; with `root`, links to files outside it are left out and listed in
    `skipped` as (path, LINK_OUTSIDE). A folder that cannot be read is an error
    (os.walk would pass over it silently, and its class would lose its images).
    """

    def unreadable(error: OSError) -> None:
        raise UserError(f"cannot read {error.filename}: {error.strerror}")

    found = []
    for directory, subdirectories, names in os.walk(folder, onerror=unreadable):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        found.extend(os.path.join(directory, name) for name in names if not name.startswith("."))
        if not recursive:
            break
    if root is not None:
        inside = os.path.realpath(root) + os.sep
        outside = [path for path in found if not os.path.realpath(path).startswith(inside)]
        if outside:
            if skipped is not None:
                skipped.extend((path, LINK_OUTSIDE) for path in outside)
            found = [path for path in found if path not in set(outside)]
    return sorted(found)


def class_folders(root: Path) -> list[Path]:
    """The non-hidden sub-folders of `root`, sorted by name: real folders (a link could
    point back at the root and copy every image into a new class) with UTF-8 names."""
    if not root.is_dir():
        raise UserError(f"{root} is not a folder of class sub-folders")
    folders = sorted(
        path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")
    )
    for folder in folders:
        shown = printable(folder)
        if folder.is_symlink():
            raise UserError(
                f"class folder {shown} is a link; class folders must be real folders inside "
                f"{printable(root)} (copy or bind-mount it there)"
            )
        if not is_utf8(folder.name):
            raise UserError(f"class folder {shown} has a name that is not UTF-8; rename it")
    return folders


def is_utf8(name: str) -> bool:
    """Whether a file name decoded by Python (surrogate escapes for bad bytes) is UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(path) -> str:
    """A path for messages, with the bytes of a non-UTF-8 name shown as escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")
