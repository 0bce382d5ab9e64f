"""A config trains on the data set it names: missing data names that data set's builder,
and a split of another kind or class count is refused before any model is built."""

import json
import shutil

import numpy as np
import pytest

import rank_accuracy
import show_augmentation
import train
from pipeline.config import CONFIG_DIR, DataConfig, load_config
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import read_split_info
from pipeline.datasets.hdf5_writer import SplitWriter
from pipeline.datasets.identity import check_split_matches
from pipeline.errors import UserError
from tests.conftest import numbered_images, write_split_file

CIFAR10 = (
    "python build_dataset.py --dataset cifar10 --source cifar-10-python.tar.gz "
    "--output output/datasets/cifar10"
)
# Each preset that does not train on the digits, and the command that builds its data.
BUILD_COMMANDS = {
    "caltech256_resnet20": "python build_dataset.py --dataset caltech256 --source "
    "256_ObjectCategories --output output/datasets/caltech256",
    "cifar10_resnet110_paper": CIFAR10,
    "cifar10_resnet56_ctrl_c": CIFAR10,
    "cifar10_resnet56_decay": CIFAR10,
    "tiny_imagenet_resnet41": "python build_dataset.py --dataset tiny-imagenet --source "
    "tiny-imagenet-200 --output output/datasets/tiny-imagenet",
}


def test_every_preset_but_the_demo_is_listed_here():
    presets = {path.stem for path in CONFIG_DIR.glob("*.toml")}
    assert presets == {"digits", *BUILD_COMMANDS}


def one_line_error(capsys, code) -> str:
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error, error
    return error


@pytest.mark.parametrize("preset", sorted(BUILD_COMMANDS))
def test_a_preset_without_its_data_names_its_own_builder(preset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(CONFIG_DIR / f"{preset}.toml")
    code = train.main(["--config", config, "--checkpoints", str(tmp_path / "run")])
    error = one_line_error(capsys, code)
    assert "does not exist" in error and f"'{BUILD_COMMANDS[preset]}'" in error
    assert "digits" not in error
    # show_augmentation.py reads the same train split: the same advice, before Keras loads.
    error = one_line_error(capsys, show_augmentation.main(["--config", config]))
    assert f"'{BUILD_COMMANDS[preset]}'" in error and "digits" not in error


def test_digits_in_a_cifar_presets_folder_are_refused_before_a_model_is_built(
    tmp_path, monkeypatch, capsys, digits_dir
):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(digits_dir, tmp_path / "output/datasets/cifar10")
    run_dir = tmp_path / "run"
    config = str(CONFIG_DIR / "cifar10_resnet56_ctrl_c.toml")
    error = one_line_error(capsys, train.main(["--config", config, "--checkpoints", str(run_dir)]))
    assert (
        "output/datasets/cifar10/train.h5 holds digits data with 10 classes, but the config "
        "says data.dataset = 'cifar10'" in error
    )
    assert f"rebuild it with '{CIFAR10} --overwrite'" in error
    assert "--set data.dataset=digits" in error
    assert not list(run_dir.glob("*.keras")) and not (run_dir / "config.json").exists()


def folder_split(path, num_classes, source="folder:/photos"):
    """A train split of 12 images as build_dataset.py --dataset folder writes it."""
    labels = (np.arange(12) % num_classes).astype(np.int32)
    names = [f"class{index}" for index in range(num_classes)]
    with SplitWriter(
        path, image_shape=(4, 4, 3), class_names=names, split="train", source=source
    ) as writer:
        writer.add(numbered_images(12), labels)
        writer.finish((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    return read_split_info(path)


def test_the_demo_preset_on_a_folder_of_ones_own_says_which_settings_to_change(tmp_path):
    data = load_config(None, [f"data.dataset_dir={tmp_path}"]).data
    info = folder_split(tmp_path / "train.h5", 3)
    with pytest.raises(UserError) as caught:
        check_split_matches(data, info)
    message = str(caught.value)
    assert f"{tmp_path / 'train.h5'} holds folder data with 3 classes" in message
    assert "the config says data.dataset = 'digits', data.num_classes = 10" in message
    assert "--set data.dataset=folder --set data.num_classes=3" in message
    # Those settings, or none stated, train on it.
    check_split_matches(DataConfig(dataset="folder", num_classes=3), info)
    check_split_matches(DataConfig(dataset="", num_classes=0), info)


def test_splits_that_name_no_kind_are_checked_by_their_class_count_only(tmp_path):
    labels = (np.arange(37) % 3).astype(np.int32)
    path = write_split_file(tmp_path / "train.h5", numbered_images(37), labels, ["a", "b", "c"])
    info = read_split_info(path)
    check_split_matches(DataConfig(dataset="cifar10"), info)  # source "test": no kind
    check_split_matches(DataConfig(), info)  # the default states nothing
    with pytest.raises(UserError, match="with 3 classes, .* data.num_classes = 10; rebuild"):
        check_split_matches(DataConfig(dataset="cifar10", num_classes=10), info)


def test_scoring_without_a_training_record_names_the_configs_builder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "epoch_0001.keras"
    model.write_bytes(b"")
    (tmp_path / "epoch_0001.json").write_text(json.dumps({"epoch": 1, "batch": 0}))
    config = str(CONFIG_DIR / "cifar10_resnet110_paper.toml")
    error = one_line_error(capsys, rank_accuracy.main(["--config", config, "--model", str(model)]))
    assert f"{split_path('output/datasets/cifar10', 'test')} does not exist" in error
    assert f"'{CIFAR10}'" in error


def test_following_the_cifar10_advice_builds_what_the_preset_trains_on(
    tmp_path, monkeypatch, capsys
):
    import shlex

    import build_dataset
    from tests.datasets.test_cifar import make_archive, write_cifar10

    monkeypatch.chdir(tmp_path)
    config = CONFIG_DIR / "cifar10_resnet56_ctrl_c.toml"
    one_line_error(capsys, train.main(["--config", str(config), "--checkpoints", "run"]))
    # The archive the advice names, as the official download packs it (a small one).
    make_archive(write_cifar10(tmp_path / "download").folder, tmp_path / "cifar-10-python.tar.gz")
    command = shlex.split(CIFAR10)
    assert command[:2] == ["python", "build_dataset.py"]
    assert build_dataset.main(command[2:]) == 0
    preset = load_config(config)
    train_split = split_path(preset.data.dataset_dir, preset.data.train_split)
    check_split_matches(preset.data, read_split_info(train_split))  # accepted: no error
    assert read_split_info(train_split).num_classes == 10


def test_a_val_split_of_another_size_is_refused_before_training_writes(tmp_path):
    from pipeline.training.data import open_data
    from pipeline.training.distribute import setup_distribution

    labels = np.array([0, 1, 2, 0, 1, 2])
    write_split_file(tmp_path / "train.h5", np.zeros((6, 8, 8, 3), np.uint8), labels, list("abc"))
    write_split_file(
        tmp_path / "val.h5", np.zeros((6, 4, 4, 3), np.uint8), labels, list("abc"), split="val"
    )
    config = load_config(
        None,
        [
            f"data.dataset_dir={tmp_path}",
            'data.dataset=""',
            "data.num_classes=0",
            "training.batch_size=2",
        ],
    )
    with pytest.raises(UserError, match=r"val.h5 serves images of \(4, 4, 3\), .* of \(8, 8, 3\)"):
        open_data(config, setup_distribution("none"))
    write_split_file(
        tmp_path / "val.h5", np.zeros((6, 8, 8, 3), np.uint8), labels, list("abd"), split="val"
    )
    with pytest.raises(UserError, match="val.h5 has other classes"):
        open_data(config, setup_distribution("none"))
