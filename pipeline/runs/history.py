"""A run's history: history.json, history.csv and training.png (no Keras here).

One row per completed epoch, numbered as Keras' progress line numbers it
(`epoch` 1 is the first). `learning_rate` is the rate of the epoch's first
batch; for an epoch resumed mid-way, of its first batch after the resume
(train.log says where a rate changed).
"""

import os
from pathlib import Path

import matplotlib

from pipeline.errors import UserError
from pipeline.runs.json_files import read_json, removed_on_error, write_json_atomically
from pipeline.runs.run_dir import CSV_FILE, HISTORY_FILE, PLOT_FILE

matplotlib.use("Agg")  # files only: training runs on machines without a display
import matplotlib.pyplot as plt  # noqa: E402


def load_history(run_dir: str | Path, keep_epochs: int) -> dict[str, list]:
    """The history of the first `keep_epochs` epochs of a run ({} when there is none).

    Resuming at epoch N drops what was logged after N, so the history and the
    plot describe exactly the epochs that led to the weights being trained.
    """
    path = Path(run_dir) / HISTORY_FILE
    if keep_epochs <= 0 or not path.is_file():
        return {}
    history = read_json(path)
    check_columns(history, path)
    return {key: values[:keep_epochs] for key, values in history.items()}


def check_columns(history: dict, path: Path, remedy: str = "move it away") -> None:
    """A history read back: columns of one number (or null) per epoch, `epoch` among
    them; anything else is a one-line error naming the file and the column."""
    epochs = history.get("epoch")
    if not isinstance(epochs, list):
        raise UserError(f"{path} is damaged: epoch must list the epochs; {remedy}")
    for name, values in history.items():
        numbers = isinstance(values, list) and all(
            value is None or (type(value) in (int, float)) for value in values
        )
        if not numbers or len(values) != len(epochs):
            raise UserError(
                f"{path} is damaged: {name} must hold one number (or null) per epoch; {remedy}"
            )


def append_row(history: dict[str, list], record: dict) -> None:
    """Add one epoch's `record` to `history`, keeping every column one value per epoch:
    a column new in this epoch (a run from before epochs were timed, resumed now; a
    metric added on a resume) gets None for the epochs before, and a column missing
    from this record gets None for this epoch."""
    rows = len(history.get("epoch", []))
    for key, value in record.items():
        history.setdefault(key, [None] * rows).append(value)
    for key, values in history.items():
        if key not in record:
            values.append(None)


def write_history(run_dir: str | Path, history: dict[str, list], rate_changes=()) -> None:
    """history.json, history.csv and training.png, each replaced whole; `rate_changes`,
    (position in epochs, rate) of each --lr, are marked on the plot."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(run_dir / HISTORY_FILE, history)
    write_csv(history, run_dir / CSV_FILE)
    plot_history(history, run_dir / PLOT_FILE, rate_changes)


def write_csv(history: dict[str, list], path: Path) -> None:
    """The same history as a CSV table, one row per epoch."""
    keys = list(history)
    rows = zip(*(history[key] for key in keys), strict=True)
    text = ",".join(keys) + "\n" + "".join(",".join(map(_cell, row)) + "\n" for row in rows)
    temporary = path.with_name(f".{path.name}.partial")
    with removed_on_error(temporary, path):
        temporary.write_text(text)
        os.replace(temporary, path)


def _cell(value) -> str:
    return "" if value is None else str(value)


def plot_series(history: dict[str, list], rate_changes=()) -> dict[str, tuple[list, list]]:
    """What training.png draws, by panel and label: (x, y) per line.

    Epoch e spans [e - 1, e] on the x axis; its rate (that of its first batch) is
    drawn as a flat step over that span, so a rate change shows as a step, not a
    ramp. Each --lr, (position in epochs, rate), is a marker where it was given.
    """
    epochs = history.get("epoch", [])
    series = {}
    for metric in ("loss", "accuracy"):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                series[f"{metric}/{label} {metric}"] = (list(epochs), list(history[key]))
    rates = history.get("learning_rate", [])
    if rates:
        # Steps: each rate from the start of its epoch to its end.
        starts = [epoch - 1 for epoch in epochs]
        series["learning rate/learning rate"] = (starts + [epochs[-1]], rates + [rates[-1]])
    shown = [(where, rate) for where, rate in rate_changes if not epochs or where <= epochs[-1]]
    if shown:
        series["learning rate/--lr"] = ([where for where, _ in shown], [rate for _, rate in shown])
    return series


def plot_history(history: dict[str, list], path: Path, rate_changes=()) -> None:
    """Three panels: loss, accuracy (train and validation), learning rate."""
    epochs = history.get("epoch", [])
    figure, axes = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
    panels = dict(zip(("loss", "accuracy", "learning rate"), axes, strict=True))
    for name, (x, y) in plot_series(history, rate_changes).items():
        panel, label = name.split("/")
        axis = panels[panel]
        if label == "--lr":
            axis.plot(x, y, "v", color="tab:red", label="--lr given")
            for where, rate in zip(x, y, strict=True):
                axis.annotate(f"{rate:g}", (where, rate), textcoords="offset points",
                              xytext=(4, 6), fontsize=8, color="tab:red")  # fmt: skip
        elif panel == "learning rate":
            label = "learning rate (first batch of each epoch)"
            axis.plot(x, y, color="tab:green", drawstyle="steps-post", label=label)
        else:
            axis.plot(x, y, label=label)
    for panel, axis in panels.items():
        axis.set_ylabel(panel)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    axes[-1].set_xlabel("epoch")
    # Whole epochs only: a fractional tick names no epoch.
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"Training history (epoch {epochs[-1] if epochs else 0})")
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.partial")
    with removed_on_error(temporary, path):
        figure.savefig(temporary, dpi=100, format="png")
        os.replace(temporary, path)
    plt.close(figure)
