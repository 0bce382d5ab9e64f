import h5py
import numpy as np
import pytest

from pipeline.datasets.hdf5_format import FORMAT_VERSION
from pipeline.datasets.hdf5_reader import open_split, read_split_info
from pipeline.datasets.hdf5_writer import SplitWriter
from pipeline.errors import UserError
from tests.conftest import write_split_file


def test_round_trip_keeps_pixels_channel_order_labels_and_names(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    images[0, 0, 0] = (255, 0, 10)  # a pure red-ish pixel: R stays first
    labels = np.array([0, 1, 2, 1, 0], dtype=np.int32)
    names = ["cat", "café", "日本"]
    path = write_split_file(tmp_path / "train.h5", images, labels, names, mean=(10, 20, 30))

    with open_split(path) as handle:
        np.testing.assert_array_equal(handle["images"][()], images)
        np.testing.assert_array_equal(handle["labels"][()], labels)
        assert handle["images"].dtype == np.uint8
        assert handle["images"].chunks[1:] == (6, 7, 3)
        assert tuple(handle["images"][0, 0, 0]) == (255, 0, 10)
        assert handle.attrs["format_version"] == FORMAT_VERSION
        assert handle.attrs["num_classes"] == 3
    info = read_split_info(path)
    assert info.class_names == tuple(names)
    assert info.num_samples == 5
    assert info.image_shape == (6, 7, 3)
    assert info.mean == (10.0, 20.0, 30.0)
    assert info.split == "train"


def test_appends_in_several_batches(tmp_path):
    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    labels = np.arange(10) % 2
    with SplitWriter(
        tmp_path / "x.h5", image_shape=(2, 2, 3), class_names=["a", "b"], split="val", source="t"
    ) as writer:
        writer.add(images[:3], labels[:3])
        writer.add(images[3:], labels[3:])
        writer.finish((0, 0, 0), (1, 1, 1))
    with open_split(tmp_path / "x.h5") as handle:
        np.testing.assert_array_equal(handle["images"][()], images)


def test_batches_that_cross_chunk_boundaries_are_written_exactly(tmp_path):
    """Whole chunks go straight to the file; rows of an unfilled chunk wait for the next
    batch or for finish. 256x256 images: chunks of 4 rows, batches of odd sizes."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(23, 256, 256, 3), dtype=np.uint8)
    labels = np.arange(23) % 3
    with SplitWriter(
        tmp_path / "x.h5", image_shape=(256, 256, 3), class_names=list("abc"), split="train",
        source="t",
    ) as writer:  # fmt: skip
        start = 0
        for size in (3, 1, 6, 2, 8, 3):
            writer.add(images[start : start + size], labels[start : start + size])
            start += size
        writer.finish((0, 0, 0), (1, 1, 1))
    with open_split(tmp_path / "x.h5") as handle:
        assert handle["images"].chunks[0] == 4
        np.testing.assert_array_equal(handle["images"][()], images)
        np.testing.assert_array_equal(handle["images"][21:23], images[21:23])
        np.testing.assert_array_equal(handle["labels"][()], labels)


def test_an_interrupted_write_leaves_no_file_a_reader_accepts(tmp_path):
    path = tmp_path / "train.h5"
    with (
        pytest.raises(RuntimeError),
        SplitWriter(
            path, image_shape=(2, 2, 3), class_names=["a"], split="train", source="t"
        ) as writer,
    ):
        writer.add(np.zeros((4, 2, 2, 3), np.uint8), np.zeros(4, np.int32))
        raise RuntimeError("killed half way")
    assert not path.exists()
    assert not (tmp_path / "train.h5.partial").exists()
    with pytest.raises(UserError, match="does not exist"):
        open_split(path)


def test_a_file_without_the_complete_mark_is_refused(tmp_path):
    path = tmp_path / "train.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["format_version"] = FORMAT_VERSION
        handle.create_dataset("images", data=np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(UserError, match="never completed"):
        open_split(path)


def test_an_unknown_format_version_is_refused(tmp_path):
    path = write_split_file(
        tmp_path / "train.h5", np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1, np.int32), ["a"]
    )
    with h5py.File(path, "a") as handle:
        handle.attrs["format_version"] = 99
    with pytest.raises(UserError, match="format_version 99"):
        open_split(path)


def test_a_file_that_is_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "train.h5"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        open_split(path)


def test_writer_rejects_labels_outside_the_classes(tmp_path):
    with (
        SplitWriter(
            tmp_path / "x.h5", image_shape=(2, 2, 3), class_names=["a", "b"], split="t", source="t"
        ) as writer,
        pytest.raises(ValueError, match="labels must lie in"),
    ):
        writer.add(np.zeros((1, 2, 2, 3), np.uint8), np.array([2]))


def test_jpeg_batches_of_one_image_or_of_equal_lengths_are_stored_exactly(tmp_path):
    """A JPEG split whose last batch holds one image (or whose payloads happen to share a
    length) must store each payload as its own row."""
    payloads = [b"\xff\xd8one\xff\xd9", b"\xff\xd8two\xff\xd9", b"\xff\xd8three!\xff\xd9", b"x"]
    with SplitWriter(
        tmp_path / "x.h5", class_names=["a", "b"], split="train", source="t", encoding="jpeg"
    ) as writer:
        writer.add(payloads[:1], [0])  # one image
        writer.add(payloads[1:2], [1])  # one image again, after the first batch
        writer.add(payloads[:2], [0, 1])  # two payloads of the same length
        writer.add(payloads[2:], [1, 0])
        writer.finish((0, 0, 0), (1, 1, 1))
    expected = [payloads[0], payloads[1], payloads[0], payloads[1], payloads[2], payloads[3]]
    with open_split(tmp_path / "x.h5") as handle:
        stored = [bytes(row) for row in handle["images"][()]]
        assert stored == expected
        assert handle["labels"][()].tolist() == [0, 1, 0, 1, 1, 0]


def rewrite(handle, name, data, **options):
    del handle[name]
    handle.create_dataset(name, data=data, **options)


FORGERIES = {
    "float images": (lambda f: rewrite(f, "images", np.zeros((4, 2, 2, 3), np.float32)), "images"),
    "images of rank 3": (lambda f: rewrite(f, "images", np.zeros((4, 2, 6), np.uint8)), "images"),
    "grey images": (lambda f: rewrite(f, "images", np.zeros((4, 2, 2, 1), np.uint8)), "images"),
    "fewer labels": (lambda f: rewrite(f, "labels", np.zeros(3, np.int32)), "3 labels for 4"),
    "label out of range": (lambda f: rewrite(f, "labels", np.array([0, 1, 2, 3], np.int32)),
                           r"labels range over 0..3, outside \[0, 3\)"),
    "negative label": (lambda f: rewrite(f, "labels", np.array([0, -1, 2, 1], np.int32)),
                       "labels range over -1..2"),
    "float labels": (lambda f: rewrite(f, "labels", np.zeros(4, np.float32)), "'labels'"),
    "missing mean": (lambda f: f.attrs.__delitem__("mean"), "attribute 'mean' is missing"),
    "nan std": (lambda f: f.attrs.__setitem__("std", [1.0, np.nan, 1.0]), "'std' is not 3 finite"),
    "zero std": (lambda f: f.attrs.__setitem__("std", [1.0, 0.0, 1.0]), "'std' is not positive"),
    "class count": (lambda f: f.attrs.__setitem__("num_classes", 5), "3 class names for num_"),
    "repeated names": (lambda f: rewrite(f, "class_names", ["a", "a", "b"],
                                         dtype=h5py.string_dtype("utf-8")), "repeated"),
    "unknown encoding": (lambda f: f.attrs.__setitem__("encoding", "webp"), "'encoding'"),
    "numeric source": (lambda f: f.attrs.__setitem__("source", 7), "'source' is not text"),
    "no labels": (lambda f: f.__delitem__("labels"), "dataset 'labels' is missing"),
    "complete twice": (lambda f: f.attrs.__setitem__("complete", [1, 1]), "never completed"),
    "covariance of 2": (lambda f: f.attrs.__setitem__("covariance", [1.0, 2.0]),
                        "'covariance' is not 3 x 3"),
    "nan covariance": (lambda f: f.attrs.__setitem__("covariance", np.full((3, 3), np.nan)),
                       "'covariance' is not finite"),
    "numeric build id": (lambda f: f.attrs.__setitem__("build_id", 5), "'build_id' is not text"),
    "two versions": (lambda f: f.attrs.__setitem__("format_version", [1, 1]), "format_version"),
}  # fmt: skip


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_file_that_breaks_the_contract_is_refused_naming_the_field(tmp_path, forgery):
    change, message = FORGERIES[forgery]
    path = write_split_file(
        tmp_path / "train.h5", np.zeros((4, 2, 2, 3), np.uint8), np.array([0, 1, 2, 0]),
        ["a", "b", "c"],
    )  # fmt: skip
    with h5py.File(path, "a") as handle:
        change(handle)
    with pytest.raises(UserError, match=message) as refused:
        open_split(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
