"""A PNG grid of augmented samples, so a user can see what the network sees."""

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import ExperimentConfig
from pipeline.datasets.hdf5_format import split_path
from pipeline.io.hdf5_generator import HDF5DatasetGenerator
from pipeline.io.loader_options import LoaderOptions

# Cells are enlarged to at least this many pixels (nearest neighbour), so 32x32 is visible.
MIN_CELL_PIXELS = 96
GAP_PIXELS = 4
# The white strip above the grid: title lines (wrapped to the grid's width), then the
# column captions.
TITLE_LINE_PIXELS, CAPTION_PIXELS = 18, 26
TITLE_SCALE, CAPTION_SCALE = 0.45, 0.4
FONT = cv2.FONT_HERSHEY_SIMPLEX


def augmentation_grid(
    config: ExperimentConfig, *, samples: int = 8, versions: int = 7, seed: int = 0
) -> np.ndarray:
    """Rows of train samples: the stored image (as the model sees it unaugmented), then
    `versions` augmentations of it. Returns one RGB uint8 image."""
    data = config.data
    path = split_path(data.dataset_dir, data.train_split)
    options = LoaderOptions(
        batch_size=1, image_size=data.image_size or None, storage=data.storage, shuffle=False
    )
    plain = HDF5DatasetGenerator(path, options)
    augmented = HDF5DatasetGenerator(
        path, dataclasses.replace(options, augment=data.augment, seed=seed)
    )
    augmented.storage = plain.storage  # one copy of the split in memory, not two
    picks = np.random.default_rng(seed).choice(plain.num_samples, samples, replace=False)
    rows = []
    for pick in picks:
        cells = [plain.load_batch(np.array([pick]), 0, 0)[0]]
        cells += [
            augmented.load_batch(np.array([pick]), 0, version)[0] for version in range(versions)
        ]
        rows.append(cells)
    # Without augmentation every column is the stored image, and the captions say so.
    label = "augmented" if data.augment else "unchanged"
    captions = ["stored"] + [f"{label} {version + 1}" for version in range(versions)]
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
    """The grid under a white strip holding the title (wrapped to the grid's width) and
    a caption over each column."""
    title_lines = wrap_text(title, grid.shape[1] - 2 * GAP_PIXELS, TITLE_SCALE)
    height = len(title_lines) * TITLE_LINE_PIXELS + CAPTION_PIXELS
    header = np.full((height, grid.shape[1], 3), 255, np.uint8)
    black = (0, 0, 0)
    for index, line in enumerate(title_lines):
        baseline = (index + 1) * TITLE_LINE_PIXELS - 2
        cv2.putText(header, line, (GAP_PIXELS, baseline), FONT, TITLE_SCALE, black, 1, cv2.LINE_AA)
    column_width = (grid.shape[1] - GAP_PIXELS) // columns
    for index, caption in enumerate(captions):
        left = GAP_PIXELS + index * column_width
        cv2.putText(header, caption, (left, height - 6), FONT, CAPTION_SCALE, black, 1, cv2.LINE_AA)
    return np.concatenate([header, grid])


def wrap_text(text: str, width: int, scale: float) -> list[str]:
    """`text` in lines no wider than `width` pixels (a word wider than that gets a line
    of its own)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, FONT, scale, 1)[0][0] <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


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
