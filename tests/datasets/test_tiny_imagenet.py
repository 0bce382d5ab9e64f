"""Tiny ImageNet builder, on a tiny `tiny-imagenet-200` tree generated in tmp_path.

Every image is a solid colour (the scheme of `solid_colour_images`): red and green name
its class (by the position of its wnid in sorted order), blue names the image within its
class, so the stored pixels say which file a stored row came from (within a JPEG
tolerance).
"""

import json
import shutil

import cv2
import numpy as np
import pytest

import build_dataset
from pipeline.datasets import tiny_imagenet
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import read_split_info
from pipeline.errors import UserError
from tests.datasets.solid_colour_images import (
    JPEG_TOLERANCE,
    colour,
    identities,
    one_line_error,
    read,
    write_jpeg,
)

# wnids.txt lists them in this (unsorted) order; class ids follow the sorted order.
WNIDS_IN_FILE = ["n09256479", "n01443537", "n02085620"]
SORTED_WNIDS = sorted(WNIDS_IN_FILE)
WORDS = [
    "n00001740\tentity",
    "n01443537\tgoldfish, Carassius auratus",
    "n02085620\tgoldfish, a second class sharing the first name",
    "n09256479\tcoral reef",
    "n99999999\tnot one of the 200, like most of words.txt",
]
EXPECTED_NAMES = ("goldfish (n01443537)", "goldfish (n02085620)", "coral reef")
TRAIN_PER_CLASS = 6
VAL_PER_CLASS = 2
# Blue of the validation images: no train image has it.
VAL_INDEX = TRAIN_PER_CLASS
SIZE = 16


def make_tiny_imagenet(parent):
    """The official layout, 3 classes; returns the tiny-imagenet-200 folder."""
    root = parent / "tiny-imagenet-200"
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS_IN_FILE) + "\n")
    (root / "words.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    for wnid in WNIDS_IN_FILE:
        label = SORTED_WNIDS.index(wnid)
        boxes = []
        for index in range(TRAIN_PER_CLASS):
            name = f"{wnid}_{index}.JPEG"
            write_jpeg(root / "train" / wnid / "images" / name, colour(label, index), SIZE)
            boxes.append(f"{name}\t0\t0\t{SIZE - 1}\t{SIZE - 1}")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    annotations = []
    for number in range(VAL_PER_CLASS * len(WNIDS_IN_FILE)):
        wnid = WNIDS_IN_FILE[number % len(WNIDS_IN_FILE)]
        rgb = colour(SORTED_WNIDS.index(wnid), VAL_INDEX)
        write_jpeg(root / "val" / "images" / f"val_{number}.JPEG", rgb, SIZE)
        annotations.append(f"val_{number}.JPEG\t{wnid}\t1\t2\t{SIZE - 2}\t{SIZE - 3}")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    for number in range(3):
        # Unlabelled official test images: never part of any split.
        write_jpeg(root / "test" / "images" / f"test_{number}.JPEG", (255, 255, 255), SIZE)
    return root


@pytest.fixture
def source(tmp_path):
    return make_tiny_imagenet(tmp_path / "download")


def build(output, source, **options):
    options = {"test_per_class": 2, "image_size": SIZE, "workers": 1, **options}
    return tiny_imagenet.build(output, source=source, **options)


def test_class_ids_follow_sorted_wnids_and_names_come_from_words_txt(tmp_path, source):
    build(tmp_path / "out", source)
    for split in ("train", "val", "test"):
        info = read_split_info(split_path(tmp_path / "out", split))
        assert info.class_names == EXPECTED_NAMES
        assert info.image_shape == (SIZE, SIZE, 3)
        images, labels = read(tmp_path / "out", split)
        # Red and green encode the class of the sorted wnid: a label that followed
        # the file order, or swapped R and B, would not match its pixels.
        identities(images, labels)
        red, blue = images[..., 0].mean(axis=(1, 2)), images[..., 2].mean(axis=(1, 2))
        np.testing.assert_allclose(red, 40 * labels + 20, atol=JPEG_TOLERANCE)
        assert not np.allclose(red, blue, atol=JPEG_TOLERANCE)


def test_val_split_holds_the_official_val_images_labelled_by_the_annotations(tmp_path, source):
    build(tmp_path / "out", source)
    images, labels = read(tmp_path / "out", "val")
    found = identities(images, labels)
    assert all(index == VAL_INDEX for _, index in found)
    assert np.bincount(labels, minlength=3).tolist() == [VAL_PER_CLASS] * 3


def test_test_split_is_carved_from_train_per_class_and_shares_no_image(tmp_path, source):
    summary = build(tmp_path / "out", source, test_per_class=2)
    assert summary["images_per_split"] == {"train": 12, "val": 6, "test": 6}
    train = identities(*read(tmp_path / "out", "train"))
    test = identities(*read(tmp_path / "out", "test"))
    assert np.bincount([label for label, _ in test], minlength=3).tolist() == [2, 2, 2]
    assert np.bincount([label for label, _ in train], minlength=3).tolist() == [4, 4, 4]
    # No image twice, none in two splits, and together they are all of train.
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)
    everything = {(label, index) for label in range(3) for index in range(TRAIN_PER_CLASS)}
    assert set(train) | set(test) == everything


def test_same_seed_gives_identical_files_and_another_seed_another_test_carve(tmp_path, source):
    build(tmp_path / "a", source, seed=0)
    build(tmp_path / "b", source, seed=0)
    build(tmp_path / "c", source, seed=1)
    for split in ("train", "val", "test"):
        first = split_path(tmp_path / "a", split).read_bytes()
        assert split_path(tmp_path / "b", split).read_bytes() == first
    test_a = set(identities(*read(tmp_path / "a", "test")))
    test_c = set(identities(*read(tmp_path / "c", "test")))
    assert test_a != test_c


def test_grayscale_jpeg_comes_out_as_three_equal_channels(tmp_path, source):
    wnid = SORTED_WNIDS[1]
    grey = np.full((SIZE, SIZE), 128, dtype=np.uint8)
    path = source / "train" / wnid / "images" / f"{wnid}_0.JPEG"
    assert cv2.imwrite(str(path), grey)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == 2  # really a 1-channel JPEG
    build(tmp_path / "out", source)
    grey_rows = []
    for split in ("train", "test"):
        images, labels = read(tmp_path / "out", split)
        for image, label in zip(images, labels, strict=True):
            if (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all():
                grey_rows.append((image, label))
    assert len(grey_rows) == 1
    image, label = grey_rows[0]
    assert label == 1
    np.testing.assert_allclose(image, 128, atol=2)


@pytest.mark.parametrize("given", ["parent", "tiny-imagenet-200"])
def test_source_may_be_the_parent_folder_or_tiny_imagenet_200_itself(tmp_path, source, given):
    folder = source.parent if given == "parent" else source
    summary = build(tmp_path / "out", folder)
    assert summary["images_per_split"] == {"train": 12, "val": 6, "test": 6}
    assert summary["source"] == f"tiny-imagenet:{source}"


@pytest.mark.parametrize(
    "missing",
    ["wnids.txt", "words.txt", "val/val_annotations.txt", f"train/{SORTED_WNIDS[2]}/images"],
)
def test_each_missing_expected_file_is_a_user_error_naming_it(tmp_path, source, missing):
    path = source / missing
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    with pytest.raises(UserError) as error:
        build(tmp_path / "out", source)
    assert str(path) in str(error.value)
    # Found before anything is written.
    assert not list(tmp_path.glob("out/*"))


def test_missing_wnids_txt_under_the_given_parent_folder_is_a_user_error(tmp_path, source):
    (source / "wnids.txt").unlink()
    with pytest.raises(UserError, match="wnids.txt") as error:
        build(tmp_path / "out", source.parent)
    assert "tiny-imagenet-200" in str(error.value)


def test_annotation_naming_an_unknown_wnid_is_a_user_error(tmp_path, source):
    annotations = source / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    lines.insert(2, "val_99.JPEG\tn00001740\t0\t0\t8\t8")  # in words.txt, not in wnids.txt
    annotations.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="line 3") as error:
        build(tmp_path / "out", source)
    assert str(annotations) in str(error.value) and "n00001740" in str(error.value)


def test_test_per_class_as_large_as_a_class_is_a_user_error(tmp_path, source):
    with pytest.raises(UserError, match="lower the test size"):
        build(tmp_path / "out", source, test_per_class=TRAIN_PER_CLASS)


def test_val_image_missing_from_disk_is_skipped_and_reported(tmp_path, source):
    missing = source / "val" / "images" / "val_4.JPEG"
    missing.unlink()
    summary = build(tmp_path / "out", source)
    assert summary["images_per_split"]["val"] == 5
    assert summary["skipped_per_split"] == {"train": 0, "val": 1, "test": 0}
    assert summary["skipped"] == {"unreadable file": [str(missing)]}


def test_command_line_builds_all_splits(tmp_path, source, capsys):
    output = tmp_path / "out"
    argv = ["--dataset", "tiny-imagenet", "--source", str(source.parent), "--output", str(output)]
    argv += ["--workers", "1", "--image-size", "8", "--test-per-class", "1"]
    assert build_dataset.main(argv) == 0
    assert f"built {output}" in capsys.readouterr().out
    sizes = {
        split: read_split_info(split_path(output, split)).num_samples
        for split in ("train", "val", "test")
    }
    assert sizes == {"train": 15, "val": 6, "test": 3}
    assert read_split_info(split_path(output, "train")).image_shape == (8, 8, 3)
    summary = json.loads((output / "build_summary.json").read_text())
    assert summary["images_per_split"] == sizes
    assert set(json.loads((output / "mean.json").read_text())) == {"R", "G", "B"}


def test_command_line_refuses_an_option_tiny_imagenet_does_not_take(tmp_path, source, capsys):
    argv = ["--dataset", "tiny-imagenet", "--source", str(source), "--output", str(tmp_path / "o")]
    assert build_dataset.main([*argv, "--val-fraction", "0.1"]) == 2
    assert "--val-fraction does not apply to tiny-imagenet" in one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_command_line_without_source_says_to_pass_it(tmp_path, capsys):
    argv = ["--dataset", "tiny-imagenet", "--output", str(tmp_path / "out")]
    assert build_dataset.main(argv) == 2
    assert "--source" in one_line_error(capsys)
