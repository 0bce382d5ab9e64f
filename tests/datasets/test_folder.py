"""Class-folder tree builder (`root/<class>/*`), on tiny trees generated in tmp_path.

Every image is a solid colour (the scheme of `solid_colour_images`): red and green name
its class (by the position of its folder in sorted order), blue names the image, so the
stored pixels say which file a stored row came from. PNGs are exact; JPEGs within a
tolerance.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

import build_dataset
from pipeline.datasets import folder, parallel_decode
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import open_split, read_split_info
from pipeline.errors import UserError
from tests.datasets.solid_colour_images import (
    colour,
    identities,
    one_line_error,
    read,
    write_jpeg,
    write_png,
)

# Created in this order; class ids follow the sorted folder names.
CLASSES_ON_DISK = ["n01751748", "n01440764", "n01443537"]
CLASS_NAMES = tuple(sorted(CLASSES_ON_DISK))
TRAIN_PER_CLASS = 4
VAL_PER_CLASS = 2
SIZE = 8


def make_tree(root, per_class, first_index=0):
    """root/<class>/<class>_<i>.png, per_class images of each class."""
    for name in CLASSES_ON_DISK:
        label = CLASS_NAMES.index(name)
        for index in range(first_index, first_index + per_class):
            write_png(root / name / f"{name}_{index}.png", colour(label, index), SIZE)
    return root


def flat_val_classes():
    """The class folder name of each flat validation image, in file-number order."""
    return [CLASSES_ON_DISK[n % 3] for n in range(VAL_PER_CLASS * 3)]


def val_colour(number, class_name):
    return colour(CLASS_NAMES.index(class_name), TRAIN_PER_CLASS + number // 3)


def expected_val_identities():
    return sorted(
        (CLASS_NAMES.index(name), TRAIN_PER_CLASS + number // 3)
        for number, name in enumerate(flat_val_classes())
    )


def make_flat_val(tmp_path, label_format):
    """A flat folder of validation images and its label file; returns (folder, label file)."""
    images = tmp_path / "val_flat"
    images.mkdir()
    classes = flat_val_classes()
    if label_format == "loc_csv":
        # ImageNet's own names: ILSVRC2012_val_00000001.JPEG, labelled by stem.
        rows = ["ImageId,PredictionString"]
        for number, name in enumerate(classes):
            stem = f"ILSVRC2012_val_{number + 1:08d}"
            write_jpeg(images / f"{stem}.JPEG", val_colour(number, name), SIZE)
            rows.append(f"{stem},{name} 48 4 500 375 {name} 10 12 60 70")
        labels = tmp_path / "LOC_val_solution.csv"
        labels.write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")
        return images, labels
    separator, suffix = {"csv": (",", ".csv"), "whitespace": (" ", ".txt")}[label_format]
    lines = []
    for number, name in enumerate(classes):
        write_png(images / f"img_{number}.png", val_colour(number, name), SIZE)
        lines.append(f"img_{number}.png{separator}{name}")
    labels = tmp_path / f"labels{suffix}"
    labels.write_text("\n".join(reversed(lines)) + "\n")
    return images, labels


@pytest.fixture
def train_root(tmp_path):
    return make_tree(tmp_path / "train", TRAIN_PER_CLASS)


def build(output, source, **options):
    options = {"image_size": SIZE, "workers": 1, **options}
    return folder.build(output, source=source, **options)


def test_labels_and_class_names_follow_the_sorted_folder_names(tmp_path, train_root):
    summary = build(tmp_path / "out", train_root)
    assert summary["images_per_split"] == {"train": 12}
    assert read_split_info(split_path(tmp_path / "out", "train")).class_names == CLASS_NAMES
    images, labels = read(tmp_path / "out", "train")
    # PNGs are lossless: the pixels are exactly the class colour, R and B in place.
    for image, (label, index) in zip(images, identities(images, labels), strict=True):
        np.testing.assert_array_equal(image, np.full((SIZE, SIZE, 3), colour(label, index)))
    assert sorted(identities(images, labels)) == [
        (label, index) for label in range(3) for index in range(TRAIN_PER_CLASS)
    ]


def test_validation_from_a_second_tree_of_class_folders(tmp_path, train_root):
    val_root = make_tree(tmp_path / "val", VAL_PER_CLASS, first_index=TRAIN_PER_CLASS)
    summary = build(tmp_path / "out", train_root, val_source=val_root)
    assert summary["images_per_split"] == {"train": 12, "val": 6}
    assert read_split_info(split_path(tmp_path / "out", "val")).class_names == CLASS_NAMES
    assert sorted(identities(*read(tmp_path / "out", "val"))) == expected_val_identities()


@pytest.mark.parametrize("label_format", ["csv", "whitespace", "loc_csv"])
def test_validation_from_a_flat_folder_and_a_label_file(tmp_path, train_root, label_format):
    images, labels = make_flat_val(tmp_path, label_format)
    summary = build(tmp_path / "out", train_root, val_source=images, val_labels=labels)
    assert summary["images_per_split"] == {"train": 12, "val": 6}
    assert sorted(identities(*read(tmp_path / "out", "val"))) == expected_val_identities()


def test_a_val_folder_naming_an_unknown_class_is_a_user_error(tmp_path, train_root):
    val_root = make_tree(tmp_path / "val", 1)
    write_png(val_root / "n99999999" / "x.png", (0, 0, 0), SIZE)
    with pytest.raises(UserError, match="n99999999"):
        build(tmp_path / "out", train_root, val_source=val_root)
    assert not list(tmp_path.glob("out/*.h5"))


def test_a_label_file_naming_an_unknown_class_is_a_user_error(tmp_path, train_root):
    images, labels = make_flat_val(tmp_path, "csv")
    labels.write_text(labels.read_text().replace("img_2.png,n01443537", "img_2.png,n99999999"))
    with pytest.raises(UserError, match="'n99999999' of img_2.png"):
        build(tmp_path / "out", train_root, val_source=images, val_labels=labels)


def test_a_label_file_missing_an_image_is_a_user_error(tmp_path, train_root):
    images, labels = make_flat_val(tmp_path, "whitespace")
    lines = [line for line in labels.read_text().splitlines() if not line.startswith("img_3.png")]
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="no class for img_3.png"):
        build(tmp_path / "out", train_root, val_source=images, val_labels=labels)


def test_val_source_together_with_val_fraction_is_a_user_error(tmp_path, train_root):
    val_root = make_tree(tmp_path / "val", 1)
    with pytest.raises(UserError, match="not both"):
        build(tmp_path / "out", train_root, val_source=val_root, val_fraction=0.25)


def test_val_labels_without_val_source_is_a_user_error(tmp_path, train_root):
    _, labels = make_flat_val(tmp_path, "csv")
    with pytest.raises(UserError, match="--val-source"):
        build(tmp_path / "out", train_root, val_labels=labels)


def test_a_flat_val_folder_without_labels_is_refused_before_train_is_written(tmp_path, train_root):
    images, _ = make_flat_val(tmp_path, "csv")
    with pytest.raises(UserError):
        build(tmp_path / "out", train_root, val_source=images)
    assert not split_path(tmp_path / "out", "train").exists()


def test_worker_count_does_not_change_the_stored_data(tmp_path, train_root, monkeypatch):
    # Small write batches: several rounds of parallel decoding, double-buffered.
    monkeypatch.setattr(parallel_decode, "WRITE_BATCH", 4)
    build(tmp_path / "one", train_root, val_fraction=0.25, workers=1)
    build(tmp_path / "two", train_root, val_fraction=0.25, workers=2)
    for split in ("train", "val"):
        with (
            open_split(split_path(tmp_path / "one", split)) as one,
            open_split(split_path(tmp_path / "two", split)) as two,
        ):
            for name in ("images", "labels"):
                assert one[name].dtype == two[name].dtype
                assert one[name][()].tobytes() == two[name][()].tobytes()
            np.testing.assert_array_equal(one.attrs["mean"], two.attrs["mean"])
            np.testing.assert_array_equal(one.attrs["std"], two.attrs["std"])


def test_statistics_are_those_of_the_stored_train_images_and_copied_to_every_split(
    tmp_path, monkeypatch
):
    # Noise images, 8 x 12: the statistics must be of the stored 8 x 8 centre crops.
    rng = np.random.default_rng(0)
    root = tmp_path / "train"
    for name in CLASSES_ON_DISK:
        (root / name).mkdir(parents=True)
        for index in range(4):
            noise = rng.integers(0, 256, (SIZE, 12, 3), dtype=np.uint8)
            noise[..., 0] //= 2  # channels with different statistics
            noise[..., 2] = 255 - noise[..., 1] // 3  # and correlated
            Image.fromarray(noise).save(root / name / f"{index}.png")
    monkeypatch.setattr(parallel_decode, "WRITE_BATCH", 4)  # statistics summed over several batches
    summary = build(tmp_path / "out", root, val_fraction=0.25, test_fraction=0.25)
    assert summary["images_per_split"] == {"train": 6, "val": 3, "test": 3}
    images, _ = read(tmp_path / "out", "train")
    pixels = images.reshape(-1, 3).astype(np.float64)
    with open_split(split_path(tmp_path / "out", "train")) as handle:
        train_attrs = {key: handle.attrs[key] for key in ("mean", "std", "covariance")}
        mean_image = handle["mean_image"][()]
    np.testing.assert_allclose(train_attrs["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(train_attrs["std"], pixels.std(axis=0), rtol=1e-9)
    assert train_attrs["covariance"].shape == (3, 3)
    # The covariance is that of every 16th pixel of each stored image (8 x 8 = 64 pixels).
    sample = images.reshape(len(images), -1, 3)[:, ::16].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(
        train_attrs["covariance"], np.cov(sample.T, bias=True), rtol=1e-9, atol=1e-6
    )
    assert mean_image.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(mean_image, images.astype(np.float64).mean(axis=0), rtol=1e-6)
    for split in ("val", "test"):
        with open_split(split_path(tmp_path / "out", split)) as handle:
            for key, value in train_attrs.items():
                np.testing.assert_array_equal(handle.attrs[key], value)
            np.testing.assert_array_equal(handle["mean_image"][()], mean_image)
            own_pixels = handle["images"][()].reshape(-1, 3).astype(np.float64)
        assert not np.allclose(own_pixels.mean(axis=0), train_attrs["mean"])
    np.testing.assert_allclose(summary["mean"], train_attrs["mean"])
    np.testing.assert_allclose(summary["std"], train_attrs["std"])
    mean_json = json.loads((tmp_path / "out" / "mean.json").read_text())
    np.testing.assert_allclose([mean_json[c] for c in "RGB"], train_attrs["mean"])


def test_command_line_builds_train_and_labelled_val(tmp_path, train_root, capsys):
    images, labels = make_flat_val(tmp_path, "loc_csv")
    output = tmp_path / "out"
    argv = ["--dataset", "folder", "--source", str(train_root), "--output", str(output)]
    argv += ["--val-source", str(images), "--val-labels", str(labels)]
    argv += ["--workers", "1", "--image-size", str(SIZE)]
    assert build_dataset.main(argv) == 0
    assert f"built {output}" in capsys.readouterr().out
    assert sorted(path.name for path in output.glob("*.h5")) == ["train.h5", "val.h5"]
    assert read_split_info(split_path(output, "train")).num_samples == 12
    assert sorted(identities(*read(output, "val"))) == expected_val_identities()
    assert json.loads((output / "build_summary.json").read_text())["num_classes"] == 3


def test_command_line_refuses_an_option_folder_does_not_take(tmp_path, train_root, capsys):
    argv = ["--dataset", "folder", "--source", str(train_root), "--output", str(tmp_path / "o")]
    assert build_dataset.main([*argv, "--include-clutter"]) == 2
    assert "--include-clutter does not apply to folder" in one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_command_line_without_source_says_to_pass_it(tmp_path, capsys):
    assert build_dataset.main(["--dataset", "folder", "--output", str(tmp_path / "o")]) == 2
    assert "--source" in one_line_error(capsys)


def test_small_files_travel_to_the_workers_in_large_chunks_and_large_ones_in_small(tmp_path):
    from pipeline.datasets.builder import ImageRecord
    from pipeline.datasets.parallel_decode import FILES_PER_CHUNK_BOUNDS, files_per_chunk

    def records_of(size: int) -> list:
        folder = tmp_path / str(size)
        folder.mkdir()
        paths = [folder / f"{index}.jpg" for index in range(8)]
        for path in paths:
            path.write_bytes(b"x" * size)
        return [ImageRecord(str(path), 0) for path in paths]

    low, high = FILES_PER_CHUNK_BOUNDS
    assert files_per_chunk(records_of(1_000)) == high
    assert files_per_chunk(records_of(500_000)) == low
    assert low < files_per_chunk(records_of(8_000)) < high
    # Files that cannot be read count as large ones: small chunks, never an error.
    assert files_per_chunk([ImageRecord(str(tmp_path / "missing.jpg"), 0)]) == low


@pytest.mark.parametrize("image_size", [32, 64, 224, 256, 512, 1024])
def test_batches_of_large_images_are_smaller_and_fill_whole_chunks(image_size):
    from pipeline.datasets.hdf5_format import chunk_rows_for
    from pipeline.datasets.parallel_decode import (
        BATCHES_IN_FLIGHT,
        SLOT_BYTES,
        WRITE_BATCH,
        write_batch_size,
    )

    batch = write_batch_size(image_size, "raw")
    image_bytes = image_size * image_size * 3
    assert 1 <= batch <= WRITE_BATCH
    assert BATCHES_IN_FLIGHT * batch * image_bytes <= SLOT_BYTES
    assert batch % chunk_rows_for((image_size, image_size, 3)) == 0
    assert write_batch_size(None, "jpeg") == WRITE_BATCH


def test_a_worker_that_dies_stops_the_build_with_an_error_not_a_hang(
    tmp_path, train_root, monkeypatch
):
    """A decoder crash (or the out-of-memory killer) ends a worker abruptly: the build
    must say so and leave nothing behind, not wait forever for the lost results."""
    real_read = parallel_decode.read_image_file_into

    def crash_on_one_file(path, size, out):
        if path.endswith("_1.png"):
            os._exit(70)  # as a segmentation fault would: no exception, no cleanup
        return real_read(path, size, out)

    monkeypatch.setattr(parallel_decode, "read_image_file_into", crash_on_one_file)
    with pytest.raises(UserError, match="a decoding worker died .* --workers 1"):
        build(tmp_path / "out", train_root, workers=2)
    assert not list((tmp_path / "out").glob("*.h5*"))


def test_a_test_split_from_a_second_tree_of_class_folders(tmp_path, train_root, capsys):
    # How MNIST- or CIFAR-style PNG exports come: train/<class>/ and test/<class>/.
    test_root = make_tree(tmp_path / "test", VAL_PER_CLASS, first_index=TRAIN_PER_CLASS)
    code = build_dataset.main(
        ["--dataset", "folder", "--source", str(train_root), "--test-source", str(test_root),
         "--val-fraction", "0.25", "--image-size", str(SIZE), "--workers", "1",
         "--output", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    info = read_split_info(split_path(tmp_path / "out", "test"))
    assert info.num_samples == 6 and info.class_names == CLASS_NAMES
    assert sorted(identities(*read(tmp_path / "out", "test"))) == [
        (label, TRAIN_PER_CLASS + index) for label in range(3) for index in range(VAL_PER_CLASS)
    ]
    assert read_split_info(split_path(tmp_path / "out", "val")).num_samples == 3
    with pytest.raises(UserError, match="either a test folder or a test fraction"):
        build(tmp_path / "other", train_root, test_source=test_root, test_fraction=0.2)
