"""Fine-tuning (fine_tune.init): a network trained on one data set starts a run on another
with other classes; frozen parts stay as they were; the run records its origin."""

import hashlib
import json

import keras
import numpy as np
import pytest

from pipeline.cli import training_parser
from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.models import load_model
from pipeline.training.start import train
from tests.conftest import write_split_file

SPEC = 'model.spec={ block = "basic", stages = [1, 1], filters = [16, 16, 32] }'


def dataset(folder, num_classes, seed):
    """A train split of 48 random 8x8 images of `num_classes` classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8)
    labels = (np.arange(48) % num_classes).astype(np.int32)
    names = [f"class{index}" for index in range(num_classes)]
    write_split_file(folder / "train.h5", images, labels, names)
    return folder


def config_for(data_dir, *overrides):
    return load_config(
        None,
        [f"data.dataset_dir={data_dir}", "data.dataset=", "data.num_classes=0", "data.augment=[]",
         "training.epochs=1", "training.batch_size=16", "training.schedule=constant",
         "training.learning_rate=0.5", "training.precision=float32", SPEC, *overrides],
    )  # fmt: skip


@pytest.fixture(scope="module")
def source_checkpoint(tmp_path_factory):
    """A checkpoint trained one epoch on a data set of 5 classes."""
    scratch = tmp_path_factory.mktemp("source")
    data_dir = dataset(scratch / "five", 5, seed=1)
    return train(config_for(data_dir), run_dir=scratch / "run").final_checkpoint


class WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = {layer.name: layer.get_weights() for layer in self.model.layers}


def layer_weights(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def same(first, second) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a, b) for a, b in zip(first, second, strict=True)
    )


def test_a_run_starts_from_the_backbone_and_trains_a_new_head(source_checkpoint, tmp_path):
    source = layer_weights(load_model(source_checkpoint))
    data_dir = dataset(tmp_path / "three", 3, seed=2)
    start = WeightsAtStart()
    config = config_for(
        data_dir,
        f"fine_tune.init={source_checkpoint}",
        'fine_tune.freeze=["stem", "stage1"]',
        "fine_tune.backbone_rate_scale=0.5",
    )
    result = train(config, run_dir=tmp_path / "run", callbacks=[start])
    # At the start: every layer up to the classifier is the checkpoint's.
    for name, weights in source.items():
        if name != "head_dense":
            assert same(start.weights[name], weights), name
    assert start.weights["head_dense"][0].shape == (32, 3)  # a new head, 3 classes
    # After training: the frozen stem and stage 1 (BN statistics too) are unchanged; the
    # rest trained.
    trained = layer_weights(load_model(result.final_checkpoint))
    for name, weights in source.items():
        frozen = name.startswith(("stem_", "stage1_"))
        if name != "head_dense":
            assert same(trained[name], weights) == frozen, name
    # The run records where its weights came from.
    digest = hashlib.sha256(source_checkpoint.read_bytes()).hexdigest()
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["fine_tune"]
    assert recorded["init"] == str(source_checkpoint)
    assert recorded["init_sha256"] == digest
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["init"] == {"weights": str(source_checkpoint), "sha256": digest}
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"starting from the weights of {source_checkpoint} (fine-tuning)" in log
    assert f"fine-tuning from {source_checkpoint}" in log
    assert "frozen: stem, stage1" in log and "0.5 times the rate" in log


def test_the_run_resumes_from_its_own_checkpoint_with_its_backbone_rate(
    source_checkpoint, tmp_path
):
    data_dir = dataset(tmp_path / "three", 3, seed=2)
    config = config_for(
        data_dir, f"fine_tune.init={source_checkpoint}", "fine_tune.backbone_rate_scale=0.25"
    )
    train(config, run_dir=tmp_path / "run")
    longer = config_for(
        data_dir,
        f"fine_tune.init={source_checkpoint}",
        "fine_tune.backbone_rate_scale=0.25",
        "training.epochs=2",
    )
    resumed = train(longer, run_dir=tmp_path / "run", resume=True)
    model = load_model(resumed.final_checkpoint)
    assert type(model.optimizer).__name__ == "SGDBackboneRate"
    assert model.optimizer.backbone_rate_scale == 0.25


def test_a_network_that_does_not_fit_is_one_line_naming_both(source_checkpoint, tmp_path):
    data_dir = dataset(tmp_path / "three", 3, seed=2)
    wider = 'model.spec={ block = "basic", stages = [1, 1], filters = [16, 16, 64] }'
    config = config_for(data_dir, f"fine_tune.init={source_checkpoint}", wider)
    with pytest.raises(UserError) as raised:
        train(config, run_dir=tmp_path / "run")
    message = str(raised.value)
    assert str(source_checkpoint) in message and "resnet network" in message
    assert "stage2_block1_conv1" in message and "\n" not in message
    # The refusal left a run directory that a corrected command can use.
    fitting = config_for(data_dir, f"fine_tune.init={source_checkpoint}")
    assert train(fitting, run_dir=tmp_path / "run").final_checkpoint.exists()


def test_a_pinned_fingerprint_refuses_another_file(source_checkpoint, tmp_path):
    data_dir = dataset(tmp_path / "three", 3, seed=2)
    config = config_for(
        data_dir, f"fine_tune.init={source_checkpoint}", f"fine_tune.init_sha256={'0' * 64}"
    )
    with pytest.raises(UserError, match="but the config pins fine_tune.init_sha256"):
        train(config, run_dir=tmp_path / "run")


def test_freezing_a_stage_the_network_lacks_is_one_line(source_checkpoint, tmp_path):
    data_dir = dataset(tmp_path / "three", 3, seed=2)
    config = config_for(
        data_dir, f"fine_tune.init={source_checkpoint}", 'fine_tune.freeze=["stage3"]'
    )
    with pytest.raises(UserError, match="fine_tune.freeze names stage3, but resnet has stem"):
        train(config, run_dir=tmp_path / "run")


def test_init_on_the_command_line_is_a_fine_tune_override():
    args = training_parser("train").parse_args(
        ["--set", "training.epochs=3", "--init", "runs/a/epoch_5.keras", "--epochs", "4"]
    )
    assert args.overrides == ["training.epochs=3", "fine_tune.init=runs/a/epoch_5.keras"]


# One SGD step on a two-layer network, with and without a backbone rate, in a process of
# its own per backend (TensorFlow hands update_step its own variables, JAX Keras').
ONE_STEP = """
import sys
import keras, numpy as np
from pipeline.nn.transfer import with_backbone_rate

def step(optimizer):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="stage1_block1_conv1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head_dense")(hidden))
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(np.ones((8, 4)), np.zeros((8, 2)))
    return [after - start for after, start in zip(model.get_weights(), before)]

plain = step(keras.optimizers.SGD(learning_rate=0.1))
scaled = step(with_backbone_rate(keras.optimizers.SGD)(learning_rate=0.1, backbone_rate_scale=0.25))
names = ["backbone kernel", "backbone bias", "head kernel", "head bias"]
for name, p, s in zip(names, plain, scaled):
    print(name, float(np.abs(s).sum() / np.abs(p).sum()))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_backbone_trains_at_its_share_of_the_rate(backend):
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip(backend)
    environment = {**os.environ, "KERAS_BACKEND": backend}
    done = subprocess.run(
        [sys.executable, "-c", ONE_STEP], capture_output=True, text=True, env=environment,
        cwd=Path(__file__).resolve().parents[2], timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    ratios = dict(line.rsplit(" ", 1) for line in done.stdout.strip().splitlines())
    assert float(ratios["backbone kernel"]) == pytest.approx(0.25, rel=1e-5)
    assert float(ratios["backbone bias"]) == pytest.approx(0.25, rel=1e-5)
    assert float(ratios["head kernel"]) == pytest.approx(1.0, rel=1e-5)
    assert float(ratios["head bias"]) == pytest.approx(1.0, rel=1e-5)


def test_a_resume_keeps_the_runs_origin_and_refuses_another_init(source_checkpoint, tmp_path):
    data_dir = dataset(tmp_path / "three", 3, seed=2)
    config = config_for(data_dir, f"fine_tune.init={source_checkpoint}")
    train(config, run_dir=tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["fine_tune"]
    other = tmp_path / "other.keras"
    other.write_bytes(source_checkpoint.read_bytes())
    elsewhere = config_for(data_dir, f"fine_tune.init={other}", "training.epochs=2")
    with pytest.raises(UserError, match="applies when a run starts, and this run started from"):
        train(elsewhere, run_dir=tmp_path / "run", resume=True)
    # A config without fine_tune (a preset given again) resumes with the run's record.
    plain = config_for(data_dir, "training.epochs=2")
    train(plain, run_dir=tmp_path / "run", resume=True)
    resumed = json.loads((tmp_path / "run" / "config.json").read_text())["fine_tune"]
    assert resumed == recorded
