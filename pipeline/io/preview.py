"""A PNG grid of augmented samples, so a user can see what the network sees."""

from pathlib import Path

import cv2
import numpy as np

from pipeline.config import ExperimentConfig
from pipeline.datasets.hdf5_format import split_path
from pipeline.io.hdf5_generator import HDF5DatasetGenerator

# Cells are enlarged to at least this many pixels (nearest neighbour), so 32x32 is visible.
MIN_CELL_PIXELS = 96
GAP_PIXELS = 4
# The white strip above the grid: a title line and the column captions.
HEADER_PIXELS = 44


def augmentation_grid(
    config: ExperimentConfig, *, samples: int = 8, versions: int = 7, seed: int = 0
) -> np.ndarray:
    """Rows of train samples: the stored image (as the model sees it unaugmented), then
    `versions` augmentations of it. Returns one RGB uint8 image."""
    data = config.data
    path = split_path(data.dataset_dir, data.train_split)
    options = dict(image_size=data.image_size or None, storage=data.storage, shuffle=False)
    plain = HDF5DatasetGenerator(path, 1, **options)
    augmented = HDF5DatasetGenerator(path, 1, augment=data.augment, seed=seed, **options)
    augmented.storage = plain.storage  # one copy of the split in memory, not two
    picks = np.random.default_rng(seed).choice(plain.num_samples, samples, replace=False)
    rows = []
    for pick in picks:
        cells = [plain.load_batch(np.array([pick]), 0, 0)[0]]
        cells += [
            augmented.load_batch(np.array([pick]), 0, version)[0] for version in range(versions)
        ]
        rows.append(cells)
    captions = ["stored"] + [f"augmented {version + 1}" for version in range(versions)]
    return with_header(tile(rows), describe_augmentation(data.augment), captions, len(rows[0]))


def describe_augmentation(augment) -> str:
    """The config's augmentations in one line; says so when there is none."""
    if not augment:
        return "no augmentation (data.augment is empty): every column is the stored image"
    parts = []
    for step in augment:
        options = ", ".join(f"{key}={value}" for key, value in step.items() if key != "name")
        parts.append(f"{step.get('name')}({options})" if options else str(step.get("name")))
    return "data.augment: " + ", ".join(parts)


def with_header(grid: np.ndarray, title: str, captions: list[str], columns: int) -> np.ndarray:
    """The grid under a white strip holding a title line and a caption over each column."""
    header = np.full((HEADER_PIXELS, grid.shape[1], 3), 255, np.uint8)
    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    cv2.putText(header, title, (GAP_PIXELS, 16), font, 0.45, black, 1, cv2.LINE_AA)
    column_width = (grid.shape[1] - GAP_PIXELS) // columns
    for index, caption in enumerate(captions):
        left = GAP_PIXELS + index * column_width
        cv2.putText(header, caption, (left, 38), font, 0.4, black, 1, cv2.LINE_AA)
    return np.concatenate([header, grid])


def tile(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Lay equal-sized RGB cells out in a grid with white gaps."""
    height, width = rows[0][0].shape[:2]
    scale = max(1, -(-MIN_CELL_PIXELS // max(height, width)))
    cell_height, cell_width = height * scale, width * scale
    grid = np.full(
        (
            len(rows) * (cell_height + GAP_PIXELS) + GAP_PIXELS,
            len(rows[0]) * (cell_width + GAP_PIXELS) + GAP_PIXELS,
            3,
        ),
        255,
        np.uint8,
    )
    for row_index, cells in enumerate(rows):
        for column_index, cell in enumerate(cells):
            top = GAP_PIXELS + row_index * (cell_height + GAP_PIXELS)
            left = GAP_PIXELS + column_index * (cell_width + GAP_PIXELS)
            grid[top : top + cell_height, left : left + cell_width] = np.repeat(
                np.repeat(cell, scale, axis=0), scale, axis=1
            )
    return grid


def write_png(image_rgb: np.ndarray, path) -> Path:
    """Write an RGB image as PNG (OpenCV writes BGR: converted here, once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
