"""Hostile names and links in a source tree: class folders must be real UTF-8 folders
inside the root, links leaving it are skipped and reported, annotations cannot reach out."""

import json
import os

import cv2
import numpy as np
import pytest

from pipeline.datasets import folder, tiny_imagenet
from pipeline.datasets.build_summary import format_summary
from pipeline.datasets.image_folders import LINK_OUTSIDE
from pipeline.errors import UserError
from tests.datasets.test_tiny_imagenet import make_tiny_imagenet


def make_tree(root, classes=("cats", "dogs"), per_class=3):
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            image = np.full((12, 12, 3), 50 * index, np.uint8)
            cv2.imwrite(str(root / name / f"{index}.png"), image)
    return root


def build(tmp_path, root):
    return folder.build(tmp_path / "out", source=root, image_size=8, workers=1)


def test_a_class_folder_that_is_a_link_is_refused(tmp_path):
    root = make_tree(tmp_path / "source")
    # A link back to the root would copy every image into a new class "all".
    (root / "all").symlink_to(root)
    with pytest.raises(UserError, match="class folder .*all is a link"):
        build(tmp_path, root)


def test_links_to_files_outside_the_source_are_skipped_and_reported(tmp_path):
    root = make_tree(tmp_path / "source")
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.zeros((12, 12, 3), np.uint8))
    (root / "cats" / "leak.png").symlink_to(secret)
    (root / "dogs" / "inside.png").symlink_to(root / "dogs" / "0.png")  # inside: kept
    summary = build(tmp_path, root)
    assert [os.path.basename(path) for path in summary["skipped"][LINK_OUTSIDE]] == ["leak.png"]
    assert summary["images_per_split"]["train"] == 7


def test_an_empty_class_folder_is_an_error_not_a_class_without_images(tmp_path):
    root = make_tree(tmp_path / "source")
    (root / "birds").mkdir()
    with pytest.raises(UserError, match="class folder .*birds holds no file"):
        build(tmp_path, root)


def test_names_that_are_not_utf8(tmp_path):
    root = make_tree(tmp_path / "source")
    # A file name with bytes that are not UTF-8 is read, and shown with escapes.
    os.rename(root / "cats" / "0.png", os.fsencode(root / "cats") + b"/\xff\xfe.png")
    (root / "cats" / "broken.png").write_bytes(b"not an image")
    os.rename(root / "cats" / "broken.png", os.fsencode(root / "cats") + b"/\xfa.png")
    summary = build(tmp_path, root)
    assert summary["images_per_split"]["train"] == 6
    assert "\\xfa.png" in format_summary(summary)
    json.dumps(summary)  # the summary file takes it too
    # A class folder name becomes a class name, which must be UTF-8.
    os.mkdir(os.fsencode(root) + b"/\xe9t\xe9")
    with pytest.raises(UserError, match=r"class folder .*\\xe9t\\xe9 has a name that is not UTF-8"):
        build(tmp_path, root)


@pytest.mark.parametrize("name", ["/etc/hostname", "../../train/x.JPEG", ".."])
def test_an_annotation_that_names_a_path_is_refused(tmp_path, name):
    source = make_tiny_imagenet(tmp_path / "download")
    annotations = source / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    first = lines[0].split("\t")
    lines[0] = "\t".join([name, *first[1:]])
    annotations.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="is not a file name of val/images"):
        tiny_imagenet.build(tmp_path / "out", source=source, test_per_class=1, workers=1)
