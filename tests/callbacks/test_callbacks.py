import json

import keras
import numpy as np
import pytest

from pipeline.callbacks import (
    EpochCheckpoint,
    TrainingMonitor,
    list_checkpoints,
    load_history,
    polynomial_decay,
)


def test_polynomial_decay_is_linear_to_zero_with_power_one():
    rates = [polynomial_decay(epoch, initial_rate=0.1, total_epochs=4) for epoch in range(5)]
    np.testing.assert_allclose(rates, [0.1, 0.075, 0.05, 0.025, 0.0])


def test_polynomial_decay_with_power_two():
    assert polynomial_decay(1, initial_rate=1.0, total_epochs=2, power=2.0) == pytest.approx(0.25)


def tiny_model():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def fit(model, callbacks, epochs, initial_epoch=0):
    data = np.zeros((4, 2), "float32"), np.zeros(4, "int32")
    model.fit(
        *data,
        validation_data=data,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=0,
    )


def test_checkpoints_every_n_epochs_and_always_at_the_end(tmp_path):
    fit(tiny_model(), [EpochCheckpoint(tmp_path, every=2)], epochs=5)
    assert sorted(list_checkpoints(tmp_path)) == [2, 4, 5]
    assert not list(tmp_path.glob("*partial*"))


def test_no_duplicate_final_checkpoint_when_the_last_epoch_was_saved(tmp_path):
    callback = EpochCheckpoint(tmp_path, every=2)
    fit(tiny_model(), [callback], epochs=4)
    assert sorted(list_checkpoints(tmp_path)) == [2, 4]


def test_list_checkpoints_ignores_partial_and_foreign_files(tmp_path):
    (tmp_path / "epoch_0003.keras").write_bytes(b"x")
    (tmp_path / ".epoch_0004.partial.keras").write_bytes(b"x")
    (tmp_path / "notes.keras").write_bytes(b"x")
    assert list(list_checkpoints(tmp_path)) == [3]


def test_monitor_writes_history_and_plot_each_epoch(tmp_path):
    fit(tiny_model(), [TrainingMonitor(tmp_path)], epochs=3)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]
    assert len(history["loss"]) == len(history["val_accuracy"]) == 3
    assert history["learning_rate"] == pytest.approx([0.01] * 3)
    assert (tmp_path / "training.png").stat().st_size > 0


def test_resuming_trims_the_history_to_the_start_epoch_and_continues(tmp_path):
    fit(tiny_model(), [TrainingMonitor(tmp_path)], epochs=4)
    fit(tiny_model(), [TrainingMonitor(tmp_path, start_epoch=2)], epochs=3, initial_epoch=2)
    history = load_history(tmp_path, keep_epochs=100)
    assert history["epoch"] == [1, 2, 3]


def test_a_fresh_run_does_not_append_to_an_old_history(tmp_path):
    fit(tiny_model(), [TrainingMonitor(tmp_path)], epochs=3)
    fit(tiny_model(), [TrainingMonitor(tmp_path)], epochs=2)
    assert load_history(tmp_path, keep_epochs=100)["epoch"] == [1, 2]
