"""Each data set kind names its builder and its source; a split names its kind (no Keras)."""

import types

import pytest

from pipeline.datasets import digits
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import open_split, read_split_info
from pipeline.datasets.kinds import KINDS, build_advice, guess_kind, kind_of
from pipeline.datasets.registry import BUILDERS
from pipeline.errors import UserError


def test_every_builder_is_a_kind_and_the_digits_source_is_the_builders():
    assert list(KINDS) == list(BUILDERS)
    assert digits.SOURCE == "sklearn.datasets.load_digits"


def test_the_cifar10_command_names_the_official_archive_and_where_it_comes_from():
    advice = build_advice("cifar10", "output/datasets/cifar10")
    assert (
        "'python build_dataset.py --dataset cifar10 --source cifar-10-python.tar.gz "
        "--output output/datasets/cifar10'" in advice
    )
    assert "official CIFAR-10 python version" in advice
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in advice
    assert "--source cifar-100-python.tar.gz " in build_advice("cifar100", "d")
    assert "--source tiny-imagenet-200 " in build_advice("tiny-imagenet", "d")
    assert "--source 256_ObjectCategories " in build_advice("caltech256", "d")
    assert "ROOT/<class>/*" in build_advice("folder", "d")
    assert (
        KINDS["digits"].build_command("d") == "python build_dataset.py --dataset digits --output d"
    )


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("cifar10:/data/cifar-10-python.tar.gz", "cifar10"),
        ("cifar100:/data/cifar-100-python", "cifar100"),
        ("tiny-imagenet:/data/tiny-imagenet-200", "tiny-imagenet"),
        ("caltech256:C:/data/256_ObjectCategories", "caltech256"),
        ("folder:/data/mnist_png/train", "folder"),
        ("test", None),
        ("digits:/forged", None),
        ("imagenet:/data", None),
    ],
)
def test_the_kind_of_a_split_is_read_from_its_source(source, kind):
    assert kind_of(types.SimpleNamespace(source=source)) == kind


def test_the_digits_build_says_it_holds_digits(digits_dir):
    assert kind_of(read_split_info(split_path(digits_dir, "train"))) == "digits"


def test_a_missing_split_is_never_offered_digits_for_a_folder_that_is_not_digits(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as caught:
        open_split("output/datasets/cifar10/test.h5")
    message = str(caught.value)
    assert (
        "does not exist; build it with 'python build_dataset.py --dataset cifar10 --source "
        "cifar-10-python.tar.gz --output output/datasets/cifar10'" in message
    )
    assert "digits" not in message
    with pytest.raises(UserError) as caught:
        open_split("mine/train.h5")
    message = str(caught.value)
    assert "'python build_dataset.py --dataset NAME --source DOWNLOAD --output mine'" in message
    assert "NAME one of digits, cifar10, cifar100, tiny-imagenet, caltech256, folder" in message
    assert guess_kind("output/datasets/tiny-imagenet") == "tiny-imagenet"
    assert guess_kind("output/datasets/cifar-10") is None
