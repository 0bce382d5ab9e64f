"""CIFAR builder tests on tiny downloads written in the official layout."""

import codecs
import dataclasses
import io
import os
import pickle
import shlex
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets import cifar, cifar_builder
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import open_split, read_split_info
from pipeline.errors import UserError

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
NUM_BATCHES = 5
IMAGES_PER_BATCH = 6
# Train labels cycle through the first three classes: two of each per batch.
USED_CLASSES = 3
CIFAR10_TRAIN_IMAGES = NUM_BATCHES * IMAGES_PER_BATCH
CIFAR10_TEST_IMAGES = 9
CIFAR100_TRAIN_IMAGES = 40
CIFAR100_TEST_IMAGES = 10
# The B plane of the planted first training image: 0..250 repeating, so that
# pixel (y, x) holds (32 * y + x) % 251, which differs from its transpose.
PLANTED_BLUE = (np.arange(1024) % 251).astype(np.uint8)


@dataclasses.dataclass
class FakeDownload:
    """A download written to disk and what the builder should make of it."""

    dataset: str
    folder: Path
    train_rows: np.ndarray
    test_rows: np.ndarray
    # label mode -> labels of train, of test, and the class names
    train_labels: dict[str, np.ndarray]
    test_labels: dict[str, np.ndarray]
    class_names: dict[str, list[str]]


def dump_protocol_2(path, contents):
    """Pickle as Python 3 does at protocol 2 (bytes become _codecs.encode calls)."""
    with open(path, "wb") as stream:
        pickle.dump(contents, stream, protocol=2)


class Python2StylePickler(pickle._Pickler):
    """Writes every str and bytes as a Python 2 byte string (BINSTRING), as the official
    files, written by Python 2 and NumPy 1, hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_string(self, value):
        data = value.encode("latin1") if isinstance(value, str) else value
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(value)

    dispatch[str] = save_python2_string
    dispatch[bytes] = save_python2_string


def dump_python_2_style(path, contents):
    """Pickle as the official files are: Python 2 byte strings and NumPy 1 global names."""
    buffer = io.BytesIO()
    Python2StylePickler(buffer, protocol=2).dump(contents)
    # GLOBAL names end with a newline and nothing refers to byte offsets: a safe rename.
    data = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    Path(path).write_bytes(data)


def random_rows(rng, count):
    return rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)


def planted_row():
    """R plane all 255, G plane all 0, B plane PLANTED_BLUE."""
    return np.concatenate([np.full(1024, 255, np.uint8), np.zeros(1024, np.uint8), PLANTED_BLUE])


def write_cifar10(root, dump=dump_protocol_2) -> FakeDownload:
    """A CIFAR-10 download of five 6-image batches and a 9-image test batch in root."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(10)
    train_rows = random_rows(rng, CIFAR10_TRAIN_IMAGES)
    train_rows[0] = planted_row()
    train_labels = np.arange(CIFAR10_TRAIN_IMAGES) % USED_CLASSES
    for index in range(NUM_BATCHES):
        batch = slice(index * IMAGES_PER_BATCH, (index + 1) * IMAGES_PER_BATCH)
        contents = {
            b"batch_label": f"training batch {index + 1} of 5".encode(),
            b"labels": train_labels[batch].tolist(),
            b"data": train_rows[batch],
            b"filenames": [f"image_{i}.png".encode() for i in range(IMAGES_PER_BATCH)],
        }
        dump(folder / f"data_batch_{index + 1}", contents)
    test_rows = random_rows(rng, CIFAR10_TEST_IMAGES)
    test_labels = rng.integers(0, 10, CIFAR10_TEST_IMAGES)
    dump(folder / "test_batch", {b"labels": test_labels.tolist(), b"data": test_rows})
    meta = {
        b"num_cases_per_batch": IMAGES_PER_BATCH,
        b"label_names": [name.encode() for name in CIFAR10_NAMES],
        b"num_vis": 3072,
    }
    dump(folder / "batches.meta", meta)
    return FakeDownload(
        "cifar10",
        folder,
        train_rows,
        test_rows,
        {"fine": train_labels},
        {"fine": test_labels},
        {"fine": CIFAR10_NAMES},
    )


def write_cifar100(root, dump=dump_protocol_2) -> FakeDownload:
    """A CIFAR-100 download (40 train, 10 test images, 100 fine and 20 coarse names)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(100)
    train_rows, test_rows = random_rows(rng, CIFAR100_TRAIN_IMAGES), random_rows(rng, 10)
    # 20 of the 100 classes, two images each, shuffled: enough for the default
    # validation split's one image per class.
    train_fine = rng.permutation(
        np.repeat(rng.choice(100, CIFAR100_TRAIN_IMAGES // 2, replace=False), 2)
    )
    test_fine = rng.integers(0, 100, CIFAR100_TEST_IMAGES)
    # Not CIFAR-100's real grouping; any mapping tells fine from coarse labels apart.
    train_coarse, test_coarse = train_fine // 5, test_fine // 5
    for name, rows, fine, coarse in (
        ("train", train_rows, train_fine, train_coarse),
        ("test", test_rows, test_fine, test_coarse),
    ):
        contents = {
            b"data": rows,
            b"fine_labels": fine.tolist(),
            b"coarse_labels": coarse.tolist(),
        }
        dump(folder / name, contents)
    fine_names = [f"fine_{index}" for index in range(100)]
    coarse_names = [f"coarse_{index}" for index in range(20)]
    meta = {
        b"fine_label_names": [name.encode() for name in fine_names],
        b"coarse_label_names": [name.encode() for name in coarse_names],
    }
    dump(folder / "meta", meta)
    return FakeDownload(
        "cifar100",
        folder,
        train_rows,
        test_rows,
        {"fine": train_fine, "coarse": train_coarse},
        {"fine": test_fine, "coarse": test_coarse},
        {"fine": fine_names, "coarse": coarse_names},
    )


WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100}


def make_archive(folder, archive_path, extra_members=()):
    """Pack `folder` under its own name, as the official archive does, plus extra members."""
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(folder, arcname=folder.name)
        for name, data in extra_members:
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return archive_path


def source_of(download: FakeDownload, kind: str) -> Path:
    """The download as the archive, its extracted folder, or the folder that holds it."""
    if kind == "folder":
        return download.folder
    if kind == "parent":
        return download.folder.parent
    archive_name = cifar.LAYOUTS[download.dataset].archive_name
    return make_archive(download.folder, download.folder.parent.parent / archive_name)


def expected_rgb(rows):
    """The RGB images that channel-planar rows describe, worked out pixel by pixel.

    Deliberately not the builder's reshape and transpose: value (y, x) of
    channel c is entry c * 1024 + y * 32 + x of its row.
    """
    y, x, channel = np.indices((32, 32, 3))
    return rows[:, channel * 1024 + y * 32 + x]


def read(dataset_dir, split):
    with open_split(split_path(dataset_dir, split)) as handle:
        return handle["images"][()], handle["labels"][()]


def error_of(call) -> str:
    """The message of the UserError that `call` raises, checked to be one line."""
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def cifar10(tmp_path):
    return write_cifar10(tmp_path / "download")


@pytest.fixture
def cifar100(tmp_path):
    return write_cifar100(tmp_path / "download")


# ---------------------------------------------------------------------------
# Contents
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["archive", "folder", "parent"])
def test_cifar10_splits_hold_every_pixel_and_label_of_the_download(tmp_path, cifar10, kind):
    source = source_of(cifar10, kind)
    output = tmp_path / "out"
    summary = cifar_builder.build(output, source=source, val_size=0)
    assert summary["images_per_split"] == {"train": 30, "test": 9}
    assert summary["num_classes"] == 10
    assert not split_path(output, "val").exists()
    train_images, train_labels = read(output, "train")
    assert train_images.dtype == np.uint8 and train_images.shape == (30, 32, 32, 3)
    # Train is data_batch_1 .. data_batch_5 concatenated, in order.
    np.testing.assert_array_equal(train_images, expected_rgb(cifar10.train_rows))
    np.testing.assert_array_equal(train_labels, cifar10.train_labels["fine"])
    test_images, test_labels = read(output, "test")
    np.testing.assert_array_equal(test_images, expected_rgb(cifar10.test_rows))
    np.testing.assert_array_equal(test_labels, cifar10.test_labels["fine"])
    for split in ("train", "test"):
        info = read_split_info(split_path(output, split))
        assert info.class_names == tuple(CIFAR10_NAMES)
        assert info.source == f"cifar10:{source}"
    # Label 1 is the second name of batches.meta.
    assert CIFAR10_NAMES[train_labels[1]] == "automobile"


def test_channels_are_rgb_and_images_are_not_transposed(tmp_path, cifar10):
    cifar_builder.build(tmp_path / "out", source=cifar10.folder, val_size=0)
    image = read(tmp_path / "out", "train")[0][0]
    assert (image[..., 0] == 255).all()
    assert (image[..., 1] == 0).all()
    np.testing.assert_array_equal(image[..., 2], PLANTED_BLUE.reshape(32, 32))
    # The B plane's first row runs along x: a transposed image would have it along y.
    assert image[0, 1, 2] == 1 and image[1, 0, 2] == 32


def test_official_python2_pickles_with_numpy1_names_load_the_same(tmp_path):
    download = write_cifar10(tmp_path / "download", dump=dump_python_2_style)
    pickled_batch = (download.folder / "data_batch_1").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in pickled_batch
    assert b"_codecs" not in pickled_batch
    cifar_builder.build(tmp_path / "out", source=download.folder, val_size=0)
    train_images, train_labels = read(tmp_path / "out", "train")
    np.testing.assert_array_equal(train_images, expected_rgb(download.train_rows))
    np.testing.assert_array_equal(train_labels, download.train_labels["fine"])
    info = read_split_info(split_path(tmp_path / "out", "test"))
    assert info.class_names == tuple(CIFAR10_NAMES)


@pytest.mark.parametrize("kind", ["archive", "folder", "parent"])
@pytest.mark.parametrize("label_mode", ["fine", "coarse"])
def test_cifar100_uses_the_labels_and_names_of_the_label_mode(tmp_path, cifar100, kind, label_mode):
    output = tmp_path / "out"
    summary = cifar_builder.build(
        output,
        source=source_of(cifar100, kind),
        dataset="cifar100",
        label_mode=label_mode,
        val_size=0,
    )
    assert summary["num_classes"] == {"fine": 100, "coarse": 20}[label_mode]
    for split, rows, labels in (
        ("train", cifar100.train_rows, cifar100.train_labels[label_mode]),
        ("test", cifar100.test_rows, cifar100.test_labels[label_mode]),
    ):
        images, stored_labels = read(output, split)
        np.testing.assert_array_equal(images, expected_rgb(rows))
        np.testing.assert_array_equal(stored_labels, labels)
        info = read_split_info(split_path(output, split))
        assert info.class_names == tuple(cifar100.class_names[label_mode])


# ---------------------------------------------------------------------------
# Validation split
# ---------------------------------------------------------------------------


def image_label_pairs(images, labels):
    """The (image bytes, label) pairs of a split, sorted: the split as a multiset."""
    return sorted(
        (image.tobytes(), int(label)) for image, label in zip(images, labels, strict=True)
    )


def test_val_size_carves_a_stratified_reproducible_validation_split(tmp_path, cifar10):
    for name, seed in (("first", 0), ("again", 0), ("other", 1)):
        cifar_builder.build(tmp_path / name, source=cifar10.folder, val_size=6, seed=seed)
    train_images, train_labels = read(tmp_path / "first", "train")
    val_images, val_labels = read(tmp_path / "first", "val")
    assert len(train_images) == 24 and len(val_images) == 6
    # Stratified: the three classes, ten images each, give two each to val.
    np.testing.assert_array_equal(np.bincount(val_labels, minlength=10), [2] * 3 + [0] * 7)
    np.testing.assert_array_equal(np.bincount(train_labels, minlength=10), [8] * 3 + [0] * 7)
    # Every training image lands, with its label, in exactly one of train and val.
    carved = image_label_pairs(
        np.concatenate([train_images, val_images]), np.concatenate([train_labels, val_labels])
    )
    original = image_label_pairs(expected_rgb(cifar10.train_rows), cifar10.train_labels["fine"])
    assert carved == original
    # The test split is not touched.
    np.testing.assert_array_equal(
        read(tmp_path / "first", "test")[0], expected_rgb(cifar10.test_rows)
    )
    again_val_images, _ = read(tmp_path / "again", "val")
    np.testing.assert_array_equal(again_val_images, val_images)
    np.testing.assert_array_equal(read(tmp_path / "again", "train")[0], train_images)
    other_val_images, _ = read(tmp_path / "other", "val")
    assert not np.array_equal(other_val_images, val_images)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_without_val_size_a_tenth_of_train_becomes_a_stratified_validation_split(
    tmp_path, cifar10, cifar100, dataset
):
    download = {"cifar10": cifar10, "cifar100": cifar100}[dataset]
    summary = cifar_builder.build(tmp_path / "out", source=download.folder, dataset=dataset)
    labels = download.train_labels["fine"]
    classes = len(np.unique(labels))
    # A tenth, but at least one image of every class (the official 50,000 give 5,000).
    expected_val = max(round(len(labels) / 10), classes)
    assert summary["images_per_split"] == {
        "train": len(labels) - expected_val,
        "val": expected_val,
        "test": len(download.test_rows),
    }
    train_images, train_labels = read(tmp_path / "out", "train")
    val_images, val_labels = read(tmp_path / "out", "val")
    assert set(val_labels.tolist()) == set(labels.tolist())
    carved = image_label_pairs(
        np.concatenate([train_images, val_images]), np.concatenate([train_labels, val_labels])
    )
    assert carved == image_label_pairs(expected_rgb(download.train_rows), labels)
    assert cifar_builder.default_val_size(np.arange(50_000) % 100) == 5000


def test_val_size_0_keeps_all_of_train_and_builds_no_validation_split(tmp_path, cifar100):
    summary = cifar_builder.build(
        tmp_path / "out", source=cifar100.folder, dataset="cifar100", val_size=0
    )
    assert summary["images_per_split"] == {"train": 40, "test": 10}
    assert not split_path(tmp_path / "out", "val").exists()


@pytest.mark.parametrize(
    "val_size, expected",
    [
        (-1, "whole number >= 0"),
        (1.5, "whole number >= 0"),
        (True, "whole number >= 0"),
        (30, "smaller than the 30 training images"),
        (1000, "smaller than the 30 training images"),
        # Fewer val images than classes, or too few left in train: sklearn refuses.
        (2, "cannot be carved stratified"),
        (28, "cannot be carved stratified"),
    ],
)
def test_bad_val_size_is_a_one_line_user_error(tmp_path, cifar10, val_size, expected):
    message = error_of(
        lambda: cifar_builder.build(tmp_path / "out", source=cifar10.folder, val_size=val_size)
    )
    assert expected in message and "--val-size" in message
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------
# Safety
# ---------------------------------------------------------------------------


class RunsShellCommand:
    """Pickles as a call to os.system: unpickling it with pickle.load would run a command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("kind", ["archive", "folder"])
def test_a_pickle_that_would_run_a_command_is_refused_and_nothing_runs(tmp_path, cifar10, kind):
    marker = tmp_path / "command_ran"
    malicious = {b"data": RunsShellCommand(f"touch {shlex.quote(str(marker))}"), b"labels": []}
    dump_protocol_2(cifar10.folder / "data_batch_3", malicious)
    source = source_of(cifar10, kind)
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=source))
    # os.system pickles as posix.system (nt.system on Windows).
    assert "data_batch_3" in message and "refused" in message and ".system'" in message
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "eval"),
        ("subprocess", "run"),
        ("numpy", "load"),
        # A NumPy global that CIFAR files never use is refused too.
        ("numpy.core.multiarray", "scalar"),
    ],
)
def test_only_the_numpy_array_globals_are_allowed(tmp_path, cifar10, module, name):
    # GLOBAL module.name, an empty tuple, REDUCE: calls module.name() when loaded.
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    (cifar10.folder / "test_batch").write_bytes(payload)
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=cifar10.folder))
    assert f"refused to unpickle global '{module}.{name}'" in message
    assert str(cifar10.folder / "test_batch") in message


def test_codecs_encode_is_allowed_only_to_rebuild_latin1_bytes(tmp_path, cifar10):
    class EncodesRot13:
        def __reduce__(self):
            return (codecs.encode, ("data", "rot13"))

    dump_protocol_2(cifar10.folder / "batches.meta", {b"label_names": EncodesRot13()})
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=cifar10.folder))
    assert "batches.meta" in message and "'rot13'" in message


def files_under(folder):
    return {path for path in folder.rglob("*")}


def test_archive_members_are_never_extracted_anywhere(tmp_path, cifar10, monkeypatch):
    traversal_names = ["../evil", "../../evil_two", "cifar-10-batches-py/../../evil_three"]
    extra = [(name, b"written outside") for name in traversal_names]
    extra.append((str(tmp_path / "evil_absolute"), b"written at an absolute path"))
    archive = make_archive(cifar10.folder, tmp_path / "cifar-10-python.tar.gz", extra)
    with tarfile.open(archive) as opened:
        assert "../evil" in opened.getnames()
    # Run from deep inside tmp_path so that every ../ target lies inside it too.
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = files_under(tmp_path)
    cifar_builder.build(tmp_path / "out", source=archive)
    created = files_under(tmp_path) - before
    assert created and all(path.is_relative_to(tmp_path / "out") for path in created)
    assert not any("evil" in path.name for path in files_under(tmp_path))


# ---------------------------------------------------------------------------
# User errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "archive"])
@pytest.mark.parametrize(
    "dataset, missing",
    [
        ("cifar10", "batches.meta"),
        ("cifar10", "data_batch_3"),
        ("cifar10", "test_batch"),
        ("cifar100", "meta"),
        ("cifar100", "train"),
        ("cifar100", "test"),
    ],
)
def test_a_missing_file_names_its_path_and_the_expected_layout(tmp_path, dataset, missing, kind):
    download = WRITERS[dataset](tmp_path / "download")
    (download.folder / missing).unlink()
    source = source_of(download, kind)
    message = error_of(
        lambda: cifar_builder.build(tmp_path / "out", source=source, dataset=dataset)
    )
    layout = cifar.LAYOUTS[dataset]
    if kind == "folder":
        assert f"missing {download.folder / missing};" in message
    else:
        assert f"missing {source}:{layout.folder_name}/{missing};" in message
    for name in (layout.archive_name, layout.folder_name, *layout.file_names):
        assert name in message
    assert not (tmp_path / "out").exists()


def test_the_other_data_sets_download_is_reported_as_missing_files(tmp_path, cifar100):
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=cifar100.folder))
    assert "missing" in message and "cifar-10-batches-py/" in message


@pytest.mark.parametrize(
    "dataset, label_mode",
    [("cifar10", "coarse"), ("cifar100", "medium"), ("cifar10", "")],
)
def test_bad_label_mode_is_a_user_error(tmp_path, cifar10, dataset, label_mode):
    message = error_of(
        lambda: cifar_builder.build(
            tmp_path / "out", source=cifar10.folder, dataset=dataset, label_mode=label_mode
        )
    )
    assert f"label mode {label_mode!r}" in message and "fine" in message


def test_unknown_dataset_is_a_user_error(tmp_path, cifar10):
    message = error_of(
        lambda: cifar_builder.build(tmp_path / "out", source=cifar10.folder, dataset="cifar1000")
    )
    assert "cifar10, cifar100" in message


@pytest.mark.parametrize("source", [None, ""])
def test_a_missing_source_asks_for_the_download(tmp_path, source):
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=source))
    assert "--source" in message and "cifar-10-python.tar.gz" in message


def test_a_source_that_does_not_exist_is_named(tmp_path):
    absent = tmp_path / "nowhere.tar.gz"
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=absent))
    assert f"{absent} does not exist" in message


def test_a_source_file_that_is_not_a_tar_archive_is_named(tmp_path):
    not_archive = tmp_path / "cifar-10-python.tar.gz"
    not_archive.write_bytes(b"this is not a tar archive")
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=not_archive))
    assert f"cannot read {not_archive} as a tar archive" in message


def test_rows_of_the_wrong_size_are_a_user_error(tmp_path, cifar10):
    contents = {b"data": np.zeros((6, 100), np.uint8), b"labels": [0] * 6}
    dump_protocol_2(cifar10.folder / "data_batch_2", contents)
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=cifar10.folder))
    assert "data_batch_2" in message and "expected 3072" in message


def test_labels_outside_the_classes_are_a_user_error(tmp_path, cifar10):
    contents = {b"data": cifar10.train_rows[:2], b"labels": [0, 10]}
    dump_protocol_2(cifar10.folder / "data_batch_4", contents)
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=cifar10.folder))
    assert "data_batch_4" in message and "outside the 10 classes" in message


def test_a_batch_that_is_not_a_dict_is_a_user_error(tmp_path, cifar10):
    dump_protocol_2(cifar10.folder / "data_batch_5", [1, 2, 3])
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=cifar10.folder))
    assert "data_batch_5" in message and "no 'data' entry" in message


def test_existing_output_is_refused_without_overwrite(tmp_path, cifar10):
    cifar_builder.build(tmp_path / "out", source=cifar10.folder)
    message = error_of(lambda: cifar_builder.build(tmp_path / "out", source=cifar10.folder))
    assert "--overwrite" in message
    cifar_builder.build(tmp_path / "out", source=cifar10.folder, overwrite=True, val_size=6)
    assert read_split_info(split_path(tmp_path / "out", "val")).num_samples == 6
