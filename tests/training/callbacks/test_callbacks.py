import json

import keras
import numpy as np
import pytest

from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.run_dir import list_checkpoints
from pipeline.runs.run_reading import latest_checkpoint
from pipeline.training.callbacks import EpochCheckpoint, TrainingMonitor, load_history


def tiny_model():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def fit(model, callbacks, epochs, initial_epoch=0, inputs=None):
    data = inputs if inputs is not None else (np.zeros((4, 2), "float32"), np.zeros(4, "int32"))
    model.fit(*data, validation_data=data, epochs=epochs, initial_epoch=initial_epoch,
              callbacks=callbacks, verbose=0)  # fmt: skip


def test_checkpoints_every_n_epochs_and_always_at_the_end_with_their_state(tmp_path):
    fit(
        tiny_model(),
        [EpochCheckpoint(tmp_path, every=2, state={"config": {"name": "x"}})],
        epochs=5,
    )
    assert sorted(list_checkpoints(tmp_path)) == [2, 4, 5]
    assert not list(tmp_path.glob("*partial*"))
    state = read_state(tmp_path / "epoch_0004.keras")
    assert state["epoch"] == 4 and state["batch"] == 0 and state["config"] == {"name": "x"}
    assert latest_checkpoint(tmp_path).name == "epoch_0005.keras"


def test_no_duplicate_final_checkpoint_when_the_last_epoch_was_saved(tmp_path):
    fit(tiny_model(), [EpochCheckpoint(tmp_path, every=2)], epochs=4)
    assert sorted(list_checkpoints(tmp_path)) == [2, 4]


def test_keep_last_deletes_older_checkpoints(tmp_path):
    fit(tiny_model(), [EpochCheckpoint(tmp_path, every=1, keep_last=2)], epochs=5)
    assert sorted(list_checkpoints(tmp_path)) == [4, 5]
    assert not (tmp_path / "epoch_0003.json").exists()


def test_best_checkpoint_follows_the_metric(tmp_path):
    callback = EpochCheckpoint(tmp_path, every=10, best_metric="val_loss")
    fit(tiny_model(), [callback], epochs=3)
    best = read_state(tmp_path / "best.keras")
    assert best["metric"] == "val_loss" and best["value"] == pytest.approx(callback.best_value)


def test_diverged_weights_are_never_saved(tmp_path):
    model = tiny_model()
    fit(model, [EpochCheckpoint(tmp_path, every=1)], epochs=1)
    bad = (np.full((4, 2), np.nan, "float32"), np.zeros(4, "int32"))
    callbacks = [keras.callbacks.TerminateOnNaN(), EpochCheckpoint(tmp_path, every=1)]
    fit(model, callbacks, epochs=3, initial_epoch=1, inputs=bad)
    assert sorted(list_checkpoints(tmp_path)) == [1]
    assert latest_checkpoint(tmp_path).name == "epoch_0001.keras"


def test_list_checkpoints_ignores_partial_and_foreign_files(tmp_path):
    (tmp_path / "epoch_0003.keras").write_bytes(b"x")
    (tmp_path / ".epoch_0004.partial.keras").write_bytes(b"x")
    (tmp_path / "notes.keras").write_bytes(b"x")
    assert list(list_checkpoints(tmp_path)) == [3]


def test_monitor_writes_history_csv_and_plot_each_epoch(tmp_path):
    fit(tiny_model(), [TrainingMonitor(tmp_path)], epochs=3)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]
    assert len(history["loss"]) == len(history["val_accuracy"]) == 3
    assert history["learning_rate"] == pytest.approx([0.01] * 3)
    assert (tmp_path / "training.png").stat().st_size > 0
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert rows[0].split(",")[:2] == ["epoch", "learning_rate"] and len(rows) == 4


def test_resuming_trims_the_history_to_the_start_epoch_and_continues(tmp_path):
    fit(tiny_model(), [TrainingMonitor(tmp_path)], epochs=4)
    fit(tiny_model(), [TrainingMonitor(tmp_path, start_epoch=2)], epochs=3, initial_epoch=2)
    assert load_history(tmp_path, keep_epochs=100)["epoch"] == [1, 2, 3]


def test_a_fresh_run_does_not_append_to_an_old_history(tmp_path):
    fit(tiny_model(), [TrainingMonitor(tmp_path)], epochs=3)
    fit(tiny_model(), [TrainingMonitor(tmp_path)], epochs=2)
    assert load_history(tmp_path, keep_epochs=100)["epoch"] == [1, 2]
