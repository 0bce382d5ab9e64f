"""TrainingMonitor: the history JSON and the loss/accuracy/learning-rate plot, every epoch."""

import json
import os
from pathlib import Path

import keras
import matplotlib

from pipeline.run_dir import write_json_atomically

matplotlib.use("Agg")  # files only: training runs on machines without a display
import matplotlib.pyplot as plt  # noqa: E402

HISTORY_FILE = "history.json"
CSV_FILE = "history.csv"
PLOT_FILE = "training.png"


def load_history(run_dir: str | Path, keep_epochs: int) -> dict[str, list]:
    """The history of the first `keep_epochs` epochs of a run ({} when there is none).

    Resuming at epoch N drops what was logged after N, so the history and the
    plot describe exactly the epochs that led to the weights being trained.
    """
    path = Path(run_dir) / HISTORY_FILE
    if keep_epochs <= 0 or not path.is_file():
        return {}
    history = json.loads(path.read_text())
    return {key: values[:keep_epochs] for key, values in history.items()}


def learning_rate_of(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class TrainingMonitor(keras.callbacks.Callback):
    """Append each epoch's logs (and the learning rate) to history.json and redraw the plot."""

    def __init__(self, run_dir: str | Path, start_epoch: int = 0) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.start_epoch = start_epoch
        self.history: dict[str, list] = {}

    def on_train_begin(self, logs=None):
        self.history = load_history(self.run_dir, self.start_epoch)

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "learning_rate": learning_rate_of(self.model)}
        record.update({key: float(value) for key, value in (logs or {}).items()})
        for key, value in record.items():
            self.history.setdefault(key, []).append(value)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.run_dir / HISTORY_FILE, self.history)
        write_csv(self.history, self.run_dir / CSV_FILE)
        plot_history(self.history, self.run_dir / PLOT_FILE)


def write_csv(history: dict[str, list], path: Path) -> None:
    """The same history as a CSV table, one row per epoch."""
    keys = list(history)
    rows = zip(*(history[key] for key in keys), strict=True)
    text = ",".join(keys) + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(text)
    os.replace(temporary, path)


def plot_history(history: dict[str, list], path: Path) -> None:
    """Three panels: loss, accuracy (train and validation), learning rate."""
    epochs = history.get("epoch", [])
    figure, (loss_axis, accuracy_axis, lr_axis) = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                axis.plot(epochs, history[key], label=f"{label} {metric}")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    lr_axis.plot(epochs, history.get("learning_rate", []), color="tab:green")
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("epoch")
    lr_axis.grid(alpha=0.3)
    figure.suptitle(f"Training history (epoch {epochs[-1] if epochs else 0})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
