"""fine_tune.init = keras:resnet50 end to end without a download: a weights file in the
format Keras publishes (legacy HDF5, without the classifier), written from random weights,
placed where Keras keeps its downloads, and taken by the run's initial model."""

import hashlib

import h5py
import keras
import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.datasets.hdf5_reader import read_split_info
from pipeline.errors import UserError
from pipeline.fine_tuning import initial_model
from pipeline.nn import keras_weights
from tests.conftest import write_split_file
from tests.nn.test_keras_weights import randomise

NAME = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """Keras' ResNet50 weights (random ones) in a Keras home of their own, with their md5
    standing in for the one Keras publishes."""
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(None, None, 3)
    )
    randomise(source, seed=5)
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / NAME
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    md5 = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setitem(keras_weights.WEIGHTS_MD5, "resnet50", ("0" * 32, md5))
    return source


def split(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(8) % 2).astype(np.int32)
    return read_split_info(write_split_file(tmp_path / "train.h5", images, labels, ["a", "b"]))


def test_keras_weights_become_the_backbone_of_the_run(keras_home, tmp_path):
    info = split(tmp_path)
    config = load_config(
        None,
        ["model.preset=keras_resnet50", "model.spec={}", "fine_tune.init=keras:resnet50",
         "fine_tune.normalization=checkpoint"],
    )  # fmt: skip
    initial = initial_model(config, info, (32, 32, 3))
    model = initial.model
    kernel = keras_home.get_layer("conv3_block2_2_conv").get_weights()[0]
    np.testing.assert_array_equal(model.get_layer("stage2_block2_conv2").get_weights()[0], kernel)
    first = keras_home.get_layer("conv1_conv").get_weights()[0]
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], first[:, :, ::-1])
    assert model.output_shape[-1] == 2
    mean = keras.ops.convert_to_numpy(model.get_layer("normalize").mean).ravel()
    np.testing.assert_allclose(mean, keras_weights.IMAGENET_MEAN_RGB, rtol=1e-6)
    assert len(initial.fine_tune.init_sha256) == 64


def test_a_config_of_another_network_names_the_preset_to_use(keras_home, tmp_path):
    config = load_config(None, ["model.preset=resnet50", "model.spec={}",
                                "fine_tune.init=keras:resnet50"])  # fmt: skip
    with pytest.raises(UserError, match="set model.preset = 'keras_resnet50'"):
        initial_model(config, split(tmp_path), (32, 32, 3))


def test_a_file_of_another_md5_is_refused(keras_home, tmp_path, monkeypatch):
    monkeypatch.setitem(keras_weights.WEIGHTS_MD5, "resnet50", ("0" * 32, "1" * 32))
    config = load_config(None, ["model.preset=keras_resnet50", "model.spec={}",
                                "fine_tune.init=keras:resnet50"])  # fmt: skip
    with pytest.raises(UserError, match="is not Keras' file"):
        initial_model(config, split(tmp_path), (32, 32, 3))
