"""Caltech-256 builder, on a tiny `256_ObjectCategories` tree generated in tmp_path.

Every image is a solid colour (the scheme of `solid_colour_images`): red and green name
its class, blue names the image within its class, so the stored pixels say which file a
stored row came from (within a JPEG tolerance).
"""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

import build_dataset
from pipeline.datasets import caltech256, parallel_decode
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import open_split, read_split_info
from pipeline.datasets.images import EMPTY_FILE, UNDECODABLE
from pipeline.errors import UserError
from tests.datasets.solid_colour_images import (
    JPEG_TOLERANCE,
    colour,
    identify,
    identities,
    one_line_error,
    read,
    solid,
    write_jpeg,
)

CLASS_FOLDERS = ["001.ak47", "002.american-flag", "003.backpack"]
CLASS_NAMES = ("ak47", "american-flag", "backpack")
CLUTTER_FOLDER = "257.clutter"
PER_CLASS = 5
SIZE = 16


def make_caltech(parent, *, clutter=True):
    """The official layout: 256_ObjectCategories/NNN.name/NNN_iiii.jpg; returns that folder."""
    root = parent / "256_ObjectCategories"
    folders = CLASS_FOLDERS + ([CLUTTER_FOLDER] if clutter else [])
    for label, folder in enumerate(folders):
        number = folder.split(".")[0]
        for index in range(PER_CLASS):
            write_jpeg(root / folder / f"{number}_{index + 1:04d}.jpg", colour(label, index), SIZE)
    return root


@pytest.fixture
def source(tmp_path):
    return make_caltech(tmp_path / "download")


def build(output, source, **options):
    options = {"image_size": SIZE, "workers": 1, **options}
    return caltech256.build(output, source=source, **options)


def decode_rgb(row):
    return cv2.cvtColor(cv2.imdecode(row, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_class_ids_follow_folder_numbers_and_names_drop_the_number(tmp_path, source):
    (source / "extras").mkdir()  # not NNN.name: not a class
    write_jpeg(source / "extras" / "x.jpg", (0, 0, 0), SIZE)
    summary = build(tmp_path / "out", source, val_fraction=0.2)
    assert summary["num_classes"] == 3
    for split in ("train", "val"):
        assert read_split_info(split_path(tmp_path / "out", split)).class_names == CLASS_NAMES
        images, labels = read(tmp_path / "out", split)
        # Red encodes the class: checks the label and that R and B are not swapped.
        identities(images, labels)
        np.testing.assert_allclose(
            images[..., 0].mean(axis=(1, 2)), 40 * labels + 20, atol=JPEG_TOLERANCE
        )


def test_clutter_is_left_out_by_default_and_kept_on_request(tmp_path, source):
    build(tmp_path / "default", source, val_fraction=0.2)
    for split in ("train", "val"):
        assert set(read(tmp_path / "default", split)[1]) == {0, 1, 2}
    summary = build(tmp_path / "clutter", source, val_fraction=0.2, include_clutter=True)
    assert summary["num_classes"] == 4
    info = read_split_info(split_path(tmp_path / "clutter", "train"))
    assert info.class_names == (*CLASS_NAMES, "clutter")
    images, labels = read(tmp_path / "clutter", "train")
    found = identities(images, labels)
    assert sum(label == 3 for label, _ in found) == 4  # 5 clutter images, 1 of them in val


def test_val_and_test_are_stratified_disjoint_and_cover_every_image(tmp_path, source):
    summary = build(tmp_path / "out", source, val_fraction=0.4, test_fraction=0.2, seed=3)
    assert summary["images_per_split"] == {"train": 6, "val": 6, "test": 3}
    found = {
        split: identities(*read(tmp_path / "out", split)) for split in ("train", "val", "test")
    }
    per_class = {"train": 2, "val": 2, "test": 1}
    for split, items in found.items():
        counts = np.bincount([label for label, _ in items], minlength=3).tolist()
        assert counts == [per_class[split]] * 3, split
    all_found = found["train"] + found["val"] + found["test"]
    assert len(set(all_found)) == len(all_found)
    assert set(all_found) == {(label, i) for label in range(3) for i in range(PER_CLASS)}
    # The seed fixes the carve-out.
    build(tmp_path / "again", source, val_fraction=0.4, test_fraction=0.2, seed=3)
    assert identities(*read(tmp_path / "again", "val")) == found["val"]


@pytest.mark.parametrize("shape", ["wide", "tall"])
def test_non_square_image_is_scaled_on_its_shorter_side_and_centre_cropped(tmp_path, shape):
    centre, edge, top = (200, 40, 90), (10, 220, 30), (120, 10, 250)
    # 20 rows x 40 columns, scaled by 0.4 to 8 x 16 then cropped to columns 4..11,
    # which come from source columns 10..29; the top band (rows 0..4) becomes rows 0..1.
    image = solid(edge, 20, 40)
    image[:, 10:30] = centre
    image[:5] = top
    expected = solid(centre, 8, 8)
    expected[:2] = top
    if shape == "tall":
        image, expected = image.transpose(1, 0, 2), expected.transpose(1, 0, 2)
    folder = tmp_path / "256_ObjectCategories" / "001.ak47"
    folder.mkdir(parents=True)
    Image.fromarray(np.ascontiguousarray(image)).save(folder / "001_0001.png")  # PIL: RGB
    build(tmp_path / "out", tmp_path, image_size=8, val_fraction=0.0)
    images, _ = read(tmp_path / "out", "train")
    assert images.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(images[0], expected, atol=1)


def test_jpeg_encoding_stores_the_original_jpeg_bytes(tmp_path, source):
    originals = {
        path.read_bytes(): path for folder in CLASS_FOLDERS for path in (source / folder).iterdir()
    }
    summary = build(tmp_path / "out", source, val_fraction=0.2, encoding="jpeg", image_size=None)
    assert summary["images_per_split"] == {"train": 12, "val": 3}
    stored = []
    for split in ("train", "val"):
        info = read_split_info(split_path(tmp_path / "out", split))
        assert info.image_shape is None and info.encoding == "jpeg"
        with open_split(split_path(tmp_path / "out", split)) as handle:
            assert handle.attrs["encoding"] == "jpeg"
            rows, labels = handle["images"][()], handle["labels"][()]
        for row, label in zip(rows, labels, strict=True):
            assert row.dtype == np.uint8
            source_path = originals[row.tobytes()]
            image = decode_rgb(row)
            source_rgb = cv2.cvtColor(cv2.imread(str(source_path)), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(image, source_rgb)
            assert identify(image)[0] == label
            stored.append(source_path)
    assert sorted(stored) == sorted(originals.values())


def test_jpeg_encoding_with_image_size_stores_resized_jpegs(tmp_path, source):
    # A PNG among the JPEGs is re-encoded as JPEG too.
    Image.fromarray(solid(colour(1, 5), 12, 24)).save(source / CLASS_FOLDERS[1] / "extra.png")
    build(tmp_path / "out", source, val_fraction=0.0, encoding="jpeg", image_size=8)
    with open_split(split_path(tmp_path / "out", "train")) as handle:
        rows, labels = handle["images"][()], handle["labels"][()]
    assert len(rows) == 3 * PER_CLASS + 1
    for row, label in zip(rows, labels, strict=True):
        assert row[:3].tobytes() == b"\xff\xd8\xff"
        image = decode_rgb(row)
        assert image.shape == (8, 8, 3)
        assert identify(image)[0] == label
    assert read_split_info(split_path(tmp_path / "out", "train")).image_shape is None


def test_unusable_files_are_skipped_and_reported_and_the_build_goes_on(tmp_path, source):
    folder = source / CLASS_FOLDERS[0]
    empty = folder / "001_0090.jpg"
    empty.write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = cv2.imencode(".jpg", noise)[1].tobytes()
    truncated = folder / "001_0091.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    text = folder / "001_0092.jpg"
    text.write_text("this is not a JPEG\n")
    notes = folder / "notes.txt"
    notes.write_text("downloaded from caltech.edu\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    # A sub-folder (the real 056.dog has one): not part of the official layout, ignored.
    write_jpeg(folder / "greg" / "001_0093.jpg", colour(0, 5), SIZE)
    summary = build(tmp_path / "out", source, val_fraction=0.2)
    good = 3 * PER_CLASS
    assert sum(summary["images_per_split"].values()) == good
    assert sum(summary["skipped_per_split"].values()) == 4
    skipped = {reason: sorted(paths) for reason, paths in summary["skipped"].items()}
    assert skipped == {
        EMPTY_FILE: [str(empty)],
        UNDECODABLE: sorted([str(truncated), str(text), str(notes)]),
    }
    assert json.loads((tmp_path / "out" / "build_summary.json").read_text()) == summary
    found = []
    for split, count in summary["images_per_split"].items():
        images, labels = read(tmp_path / "out", split)
        assert (
            len(labels) == count == read_split_info(split_path(tmp_path / "out", split)).num_samples
        )
        found += identities(images, labels)
    assert (0, 5) not in found and len(set(found)) == good


def test_unusual_image_formats_become_8_bit_rgb_with_their_colours(tmp_path):
    root = tmp_path / "256_ObjectCategories"
    for folder in ("001.rgba", "002.grey", "003.sixteen-bit", "004.cmyk", "005.palette"):
        (root / folder).mkdir(parents=True)
    rgba = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
    rgba[...] = (200, 30, 100, 255)
    rgba[:, : SIZE // 2, 3] = 0  # half transparent: alpha is dropped, colour kept
    Image.fromarray(rgba, "RGBA").save(root / "001.rgba" / "a.png")
    Image.new("L", (SIZE, SIZE), 77).save(root / "002.grey" / "g.png")
    sixteen_bit = np.full((SIZE, SIZE, 3), (100 * 257, 150 * 257, 50 * 257), dtype=np.uint16)
    assert cv2.imwrite(str(root / "003.sixteen-bit" / "s.png"), sixteen_bit)  # BGR: RGB 50,150,100
    assert (
        cv2.imread(str(root / "003.sixteen-bit" / "s.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    )
    Image.new("CMYK", (SIZE, SIZE), (55, 225, 155, 0)).save(root / "004.cmyk" / "c.jpg", quality=95)
    assert Image.open(root / "004.cmyk" / "c.jpg").mode == "CMYK"
    palette = Image.new("RGB", (SIZE, SIZE), (10, 120, 230)).convert(
        "P", palette=Image.Palette.ADAPTIVE
    )
    palette.save(root / "005.palette" / "p.png")
    build(tmp_path / "out", root, val_fraction=0.0)
    images, labels = read(tmp_path / "out", "train")
    assert images.dtype == np.uint8 and images.shape == (5, SIZE, SIZE, 3)
    by_label = dict(zip(labels.tolist(), images, strict=True))
    expected = {0: (200, 30, 100), 1: (77, 77, 77), 2: (50, 150, 100), 4: (10, 120, 230)}
    for label, rgb in expected.items():
        np.testing.assert_array_equal(by_label[label], solid(rgb, SIZE), err_msg=str(label))
    np.testing.assert_allclose(by_label[3], solid((200, 30, 100), SIZE), atol=JPEG_TOLERANCE)


@pytest.mark.parametrize("given", ["parent", "256_ObjectCategories"])
def test_source_may_be_the_parent_folder_or_256_object_categories_itself(tmp_path, source, given):
    summary = build(tmp_path / "out", source.parent if given == "parent" else source)
    assert summary["source"] == f"caltech256:{source}"
    assert summary["images_per_split"] == {"train": 12, "val": 3}


def test_a_folder_without_class_folders_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="001.ak47"):
        build(tmp_path / "out", tmp_path / "empty")
    with pytest.raises(UserError, match="no-such-folder"):
        build(tmp_path / "out", tmp_path / "no-such-folder")


def test_existing_output_is_refused_without_overwrite(tmp_path, source):
    build(tmp_path / "out", source)
    with pytest.raises(UserError, match="--overwrite"):
        build(tmp_path / "out", source)
    build(tmp_path / "out", source, overwrite=True)


def test_overwrite_leaves_no_split_of_the_previous_build(tmp_path, source):
    build(tmp_path / "out", source, test_fraction=0.2, seed=0)
    summary = build(tmp_path / "out", source, test_fraction=0.0, seed=1, overwrite=True)
    assert "test" not in summary["images_per_split"]
    assert not split_path(tmp_path / "out", "test").exists()


def test_a_build_killed_half_way_leaves_no_split_file(tmp_path, source, monkeypatch):
    calls = []

    def read_then_die(path, size, out):
        calls.append(path)
        if len(calls) > 3:
            raise RuntimeError("killed")
        return real_read(path, size, out)

    real_read = parallel_decode.read_image_file_into
    monkeypatch.setattr(parallel_decode, "read_image_file_into", read_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        build(tmp_path / "out", source)
    assert len(calls) == 4  # it died inside the train split
    leftovers = [path.name for path in (tmp_path / "out").iterdir()]
    assert not [name for name in leftovers if ".h5" in name], leftovers
    with pytest.raises(UserError, match="does not exist"):
        open_split(split_path(tmp_path / "out", "train"))
    # Nothing is left to refuse: the next build needs no --overwrite.
    monkeypatch.undo()
    build(tmp_path / "out", source)
    assert read_split_info(split_path(tmp_path / "out", "train")).num_samples == 12


def test_command_line_builds_the_splits(tmp_path, source, capsys):
    output = tmp_path / "out"
    argv = ["--dataset", "caltech256", "--source", str(source), "--output", str(output)]
    argv += ["--workers", "1", "--image-size", "8", "--include-clutter", "--val-fraction", "0.4"]
    assert build_dataset.main(argv) == 0
    assert f"built {output}" in capsys.readouterr().out
    assert sorted(path.name for path in output.glob("*.h5")) == ["train.h5", "val.h5"]
    train = read_split_info(split_path(output, "train"))
    assert train.class_names == (*CLASS_NAMES, "clutter")
    assert train.image_shape == (8, 8, 3)
    assert train.num_samples == 12
    assert read_split_info(split_path(output, "val")).num_samples == 8


def test_command_line_refuses_an_option_caltech256_does_not_take(tmp_path, source, capsys):
    argv = ["--dataset", "caltech256", "--source", str(source), "--output", str(tmp_path / "o")]
    assert build_dataset.main([*argv, "--val-size", "5"]) == 2
    assert "--val-size does not apply to caltech256" in one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_command_line_refuses_an_image_size_of_zero(tmp_path, source, capsys):
    argv = ["--dataset", "caltech256", "--source", str(source), "--output", str(tmp_path / "o")]
    assert build_dataset.main([*argv, "--workers", "1", "--image-size", "0"]) == 2
    assert "image" in one_line_error(capsys)


def test_command_line_without_source_says_to_pass_it(tmp_path, capsys):
    assert build_dataset.main(["--dataset", "caltech256", "--output", str(tmp_path / "o")]) == 2
    assert "--source" in one_line_error(capsys)
