import cv2
import numpy as np

import show_augmentation
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import open_split
from pipeline.io.preview import FONT, GAP_PIXELS, MIN_CELL_PIXELS, wrap_text


def test_writes_a_grid_of_originals_and_their_augmentations(tmp_path, digits_dir, capsys):
    output = tmp_path / "grid.png"
    code = show_augmentation.main(
        [
            "--set", f"data.dataset_dir={digits_dir}",
            "--set", 'data.augment=[{name = "flip", probability = 1.0}]',
            "--samples", "3", "--versions", "2", "--output", str(output),
        ]
    )  # fmt: skip
    assert code == 0 and str(output) in capsys.readouterr().out
    picture = cv2.cvtColor(cv2.imread(str(output)), cv2.COLOR_BGR2RGB)
    # A caption strip on top: the augmentations, then "stored", "augmented 1", ...
    scale = -(-MIN_CELL_PIXELS // 32)
    cell = 32 * scale
    side = 3 * (cell + GAP_PIXELS) + GAP_PIXELS
    header, grid = picture[:-side], picture[-side:]
    assert header.min() < 128  # text was drawn
    assert grid.shape == (side, side, 3)
    original = grid[GAP_PIXELS : GAP_PIXELS + cell, GAP_PIXELS : GAP_PIXELS + cell][
        ::scale, ::scale
    ]
    flipped = grid[
        GAP_PIXELS : GAP_PIXELS + cell, 2 * GAP_PIXELS + cell : 2 * GAP_PIXELS + 2 * cell
    ]
    # The first cell is a stored train image; the next is its mirror (flip with probability 1).
    with open_split(split_path(digits_dir, "train")) as handle:
        stored = handle["images"][()]
    assert any(np.array_equal(original, image) for image in stored)
    np.testing.assert_array_equal(flipped[::scale, ::scale], original[:, ::-1])


def test_a_config_without_augmentation_says_so(tmp_path, digits_dir, capsys):
    output = tmp_path / "grid.png"
    code = show_augmentation.main(
        ["--set", f"data.dataset_dir={digits_dir}", "--samples", "2", "--versions", "1",
         "--output", str(output)]
    )  # fmt: skip
    assert code == 0
    assert "note: data.augment is empty" in capsys.readouterr().out


def test_the_caption_line_names_each_augmentation():
    from pipeline.io.preview import describe_augmentation

    assert describe_augmentation([{"name": "pad_crop", "pad": 4}, {"name": "flip"}]) == (
        "data.augment: pad_crop(pad=4), flip"
    )
    assert describe_augmentation(()).startswith("no augmentation")


def test_the_title_wraps_to_the_width_of_a_narrow_grid():
    title = "no augmentation (data.augment is empty): every column is the stored image"
    lines = wrap_text(title, 300, 0.45)
    assert len(lines) > 1 and " ".join(lines) == title
    assert all(cv2.getTextSize(line, FONT, 0.45, 1)[0][0] <= 300 for line in lines)
    assert wrap_text("short", 300, 0.45) == ["short"]
