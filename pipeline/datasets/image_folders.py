"""Listing image files in class folders (the layout of Caltech-256, Tiny ImageNet, ImageNet)."""

from pathlib import Path

from pipeline.errors import UserError


def require(path: Path, layout: str) -> Path:
    """Return `path` if it exists, else a UserError naming it and the expected layout."""
    if not path.exists():
        raise UserError(f"expected {path} (layout: {layout})")
    return path


def files_under(folder: Path) -> list[Path]:
    """Every regular, non-hidden file below `folder`, sorted (so builds are reproducible)."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def class_folders(root: Path) -> list[Path]:
    """The non-hidden sub-folders of `root`, sorted by name."""
    if not root.is_dir():
        raise UserError(f"{root} is not a folder of class sub-folders")
    return sorted(
        path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")
    )
