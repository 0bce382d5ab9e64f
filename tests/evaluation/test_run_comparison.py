"""compare_runs.py on run directories written as train.py writes them (no Keras)."""

import json

import cv2
import pytest

import compare_runs
from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.evaluation.run_comparison import compare_runs as compare


def write_run(path, *, val_accuracy, seconds=(10.0, 12.0, 11.0), fingerprint="a" * 64, changes=()):
    path.mkdir(parents=True)
    epochs = list(range(1, len(val_accuracy) + 1))
    history = {
        "epoch": epochs,
        "learning_rate": [0.1] * len(epochs),
        "loss": [2.0 - 0.1 * e for e in epochs],
        "accuracy": [0.5 + 0.05 * e for e in epochs],
        "val_loss": [2.1 - 0.1 * e for e in epochs],
        "val_accuracy": list(val_accuracy),
        "val_rank5": [0.9] * len(epochs),
    }
    if seconds is not None:
        history["seconds"] = list(seconds)[: len(epochs)]
    (path / "history.json").write_text(json.dumps(history))
    config = load_config(None, ["training.batch_size=100"]).to_dict()
    config["training"]["rate_changes"] = list(changes)
    (path / "config.json").write_text(json.dumps(config))
    data = {"/data/digits/train.h5": {"num_samples": 1000, "sha256_labels_and_edges": fingerprint}}
    (path / "run_info.json").write_text(json.dumps({"data": data}))
    return path


def test_two_runs_give_a_picture_and_a_table_of_best_and_final_figures(tmp_path, capsys):
    first = write_run(tmp_path / "runs" / "constant", val_accuracy=[0.80, 0.90, 0.85])
    second = write_run(
        tmp_path / "runs" / "ctrl_c",
        val_accuracy=[0.70, 0.95, 0.96],
        changes=[{"epoch": 1, "batch": 5, "rate": 0.01}],
    )
    output = tmp_path / "comparison"
    assert compare_runs.main([str(first), str(second), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "90.00% (ep 2)" in printed and "85.00%" in printed  # best and final of the first
    assert "96.00% (ep 3)" in printed and "0:00:33" in printed
    assert (
        "ctrl_c: bottleneck pre-activation ResNet-20, cosine rate; --lr 0.01 from epoch 2, batch 6"
        in printed
    )
    rows = json.loads((output / "comparison.json").read_text())["runs"]
    assert [row["run"] for row in rows] == ["constant", "ctrl_c"]
    assert rows[0]["best_rank_1"] == 0.90 and rows[0]["best_rank_1_epoch"] == 2
    assert rows[0]["final_rank_1"] == 0.85 and rows[0]["training_seconds"] == 33.0
    # The --lr given after batch 5 of epoch 2 (10 batches of 100 per epoch): at 1.5 on the
    # plot's axis, and in train.log's words from the first batch at the new rate.
    assert rows[1]["lr_changes"] == [
        {"from": "epoch 2, batch 6", "at": 1.5, "rate": 0.01, "before": {}}
    ]
    assert rows[1]["data"] == {
        "train": {"file": "/data/digits/train.h5", "num_samples": 1000, "fingerprint": "a" * 12}
    }
    picture = cv2.imread(str(output / "comparison.png"))
    assert picture is not None and picture.shape[0] > 500 and picture.std() > 10


def test_runs_on_other_data_get_a_note_and_untimed_runs_no_time(tmp_path):
    first = write_run(tmp_path / "a" / "run", val_accuracy=[0.8], seconds=None)
    second = write_run(tmp_path / "b" / "run", val_accuracy=[0.9], fingerprint="b" * 64)
    rows, table, _picture, data = compare([first, second], tmp_path / "out")
    # Same names: labelled by as much of the path as tells them apart.
    assert [row["run"] for row in rows] == ["a/run", "b/run"]
    assert rows[0]["training_seconds"] is None
    assert "note: the runs did not train on the same data" in table
    assert json.loads(data.read_text())["note"].startswith("the runs did not train")


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a run directory with a history"):
        compare([tmp_path / "empty"], tmp_path / "out")


@pytest.mark.parametrize(
    "history",
    [
        [1, 2, 3],
        {"loss": [1.0]},
        {"epoch": [1, 2], "loss": [1.0]},
        {"epoch": [1], "loss": ["1.0"]},
        {"epoch": ["1"], "loss": [1.0]},
    ],
)
def test_a_damaged_history_is_one_line(tmp_path, history):
    run = write_run(tmp_path / "run", val_accuracy=[0.9])
    (run / "history.json").write_text(json.dumps(history))
    with pytest.raises(UserError, match="history.json is damaged"):
        compare([run], tmp_path / "out")
