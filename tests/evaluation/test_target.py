"""Which model and which data rank_accuracy.py scores: the data the model was trained on."""

import json

import numpy as np
import pytest

import rank_accuracy
from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.evaluation.target import evaluation_target
from pipeline.runs.checkpoint_files import point_latest, save_checkpoint
from tests.conftest import write_split_file

TINY = 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'


def other_data_set(directory, class_names):
    """Data set B: 37 test images of 4x4 pixels, with the given class names."""
    directory.mkdir()
    labels = (np.arange(37) % len(class_names)).astype(np.int32)
    images = np.zeros((37, 4, 4, 3), np.uint8)
    write_split_file(directory / "test.h5", images, labels, class_names, split="test")
    return directory


@pytest.fixture
def checkpoint_on_digits(tmp_path, digits_dir):
    """An (untrained) checkpoint whose state says it was trained on the digits, data set A."""
    import keras

    from pipeline.datasets.hdf5_reader import read_split_info
    from pipeline.models import build_model_for_data

    config = load_config(None, [f"data.dataset_dir={digits_dir}", TINY])
    info = read_split_info(digits_dir / "train.h5")
    keras.utils.set_random_seed(0)
    model = build_model_for_data(config.model, info, info.image_shape)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    extra = {"config": config.to_dict(), "class_names": list(info.class_names)}
    path = save_checkpoint(model, run_dir / "epoch_0003.keras", epoch=3, extra=extra)
    point_latest(run_dir, path)
    return path


def test_the_model_is_scored_on_the_data_it_was_trained_on_and_both_are_named(
    tmp_path, digits_dir, checkpoint_on_digits, capsys
):
    data_set_b = other_data_set(tmp_path / "b", [f"c{index}" for index in range(10)])
    code = rank_accuracy.main(
        ["--model", str(checkpoint_on_digits), "--set", f"data.dataset_dir={data_set_b}",
         "--report", str(tmp_path / "report.json")]
    )  # fmt: skip
    assert code == 0
    output = capsys.readouterr().out
    assert f"model: {checkpoint_on_digits} (after epoch 3)" in output
    assert f"data: {digits_dir / 'test.h5'} (test split, 360 samples)" in output
    assert "mode: center" in output
    assert f"note: the config names {data_set_b}" in output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_samples"] == 360 and report["dataset"] == str(digits_dir / "test.h5")
    # The digits preset's figures are for its own folder's data: recorded, not compared.
    reproduction = report["reproduction"]
    assert reproduction["compared"] is False and "difference" not in reproduction
    assert reproduction["why_not"].startswith("the expected figures are for config/digits.toml")
    assert "not compared: the expected figures are for config/digits.toml" in output


def test_checkpoints_scores_that_runs_latest(tmp_path, checkpoint_on_digits, digits_dir):
    config = load_config(None, [])
    target = evaluation_target(config, checkpoints=checkpoint_on_digits.parent)
    assert target.model_path == checkpoint_on_digits
    assert target.split_file == digits_dir / "test.h5"
    target = evaluation_target(config, checkpoints=checkpoint_on_digits.parent, split="val")
    assert target.split_file == digits_dir / "val.h5"
    with pytest.raises(UserError, match="give one of them"):
        evaluation_target(config, model=checkpoint_on_digits, checkpoints=tmp_path)


def test_data_with_other_class_names_is_a_one_line_error(tmp_path, checkpoint_on_digits, capsys):
    renamed = other_data_set(tmp_path / "b", [str(index) for index in range(9)] + ["ten"])
    code = rank_accuracy.main(["--model", str(checkpoint_on_digits), "--dataset", str(renamed)])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error
    assert "class 9 named '9'" in error and "names it 'ten'" in error
    fewer = other_data_set(tmp_path / "c", ["a", "b", "c"])
    assert rank_accuracy.main(["--model", str(checkpoint_on_digits), "--dataset", str(fewer)]) == 2
    assert "trained on 10 classes" in capsys.readouterr().err


def test_training_data_that_is_gone_is_a_one_line_error(tmp_path, checkpoint_on_digits):
    state_file = checkpoint_on_digits.with_suffix(".json")
    state = json.loads(state_file.read_text())
    state["config"]["data"]["dataset_dir"] = str(tmp_path / "moved")
    state_file.write_text(json.dumps(state))
    with pytest.raises(UserError, match="was trained on .*moved.*--dataset"):
        evaluation_target(load_config(None, []), model=checkpoint_on_digits)
