"""Every experiment preset in config/ loads, names a buildable network and valid augmentations."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import CONFIG_DIR, load_config
from pipeline.io.augment import build_augmenter
from pipeline.nn.presets import spec_for

PRESET_FILES = sorted(Path(CONFIG_DIR).glob("*.toml"))
CLASS_COUNTS = {"digits": 10, "cifar10": 10, "cifar100": 100, "tiny-imagenet": 200,
                "caltech256": 256}  # fmt: skip


def test_there_are_presets_for_the_reference_experiments():
    names = {path.stem for path in PRESET_FILES}
    expected = {
        "digits",
        "cifar10_resnet56_ctrl_c",
        "cifar10_resnet56_decay",
        "cifar10_resnet110_paper",
        "tiny_imagenet_resnet41",
        "caltech256_resnet20",
    }
    assert expected <= names


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda path: path.stem)
def test_preset_loads_and_its_parts_are_valid(path):
    config = load_config(path)
    spec = spec_for(config.model.preset, config.model.spec)
    assert spec.depth > 2
    build_augmenter(config.data.augment, covariance=np.eye(3))
    # Each preset says how to run it and what it should reach.
    text = path.read_text()
    assert "python " in text and "Expected" in text
    # ... and which data set it trains on, built where build_dataset.py puts that kind
    # (Caltech-256 without its clutter class).
    data = config.data
    assert data.num_classes == CLASS_COUNTS[data.dataset]
    assert Path(data.dataset_dir) == Path("output/datasets") / data.dataset
    assert f"--dataset {data.dataset}" in text
