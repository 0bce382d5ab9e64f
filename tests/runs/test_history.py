"""The history's table stays rectangular when a column starts or stops (no Keras)."""

import csv

from pipeline.runs.history import append_row, plot_series, write_history


def test_a_column_new_on_a_resume_is_padded_and_the_files_still_write(tmp_path):
    # A run from before epochs were timed, resumed now: `seconds` starts at epoch 3.
    history = {"epoch": [1, 2], "learning_rate": [0.1, 0.1], "loss": [2.0, 1.5]}
    append_row(history, {"epoch": 3, "learning_rate": 0.01, "loss": 1.2, "seconds": 4.5})
    assert history["seconds"] == [None, None, 4.5]
    # A column missing from a later epoch (val metrics after the val split went away).
    append_row(history, {"epoch": 4, "learning_rate": 0.01, "seconds": 4.0})
    assert history["loss"] == [2.0, 1.5, 1.2, None]
    assert {len(values) for values in history.values()} == {4}
    write_history(tmp_path, history)
    with open(tmp_path / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["seconds"] for row in rows] == ["", "", "4.5", "4.0"]
    assert (tmp_path / "training.png").stat().st_size > 0
    assert plot_series(history)["loss/train loss"][1] == [2.0, 1.5, 1.2, None]
