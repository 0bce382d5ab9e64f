"""Several runs side by side: their curves and rates in one picture, and a table of best
and final validation rank-1/rank-5, epochs, training time and data fingerprints.
No Keras: everything comes from the run directories' files."""

import dataclasses
import math
from pathlib import Path

import matplotlib

from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.runs.history import check_columns, plot_series
from pipeline.runs.learning_rate import describe_position, rate_changes
from pipeline.runs.run_dir import (
    CONFIG_FILE,
    HISTORY_FILE,
    RUN_INFO_FILE,
    read_json,
    settle_run_dir,
    write_json_atomically,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PICTURE_FILE, TABLE_FILE = "comparison.png", "comparison.json"


@dataclasses.dataclass(frozen=True)
class Run:
    label: str
    path: Path
    history: dict
    config: object  # ExperimentConfig
    data: dict  # run_info.json's data files: path -> fingerprint fields

    @property
    def batches_per_epoch(self) -> int | None:
        """From the training split's size and the batch size (None when not recorded)."""
        train = self.config.data.train_split
        for path, fields in self.data.items():
            if Path(path).stem == train and fields.get("num_samples"):
                return math.ceil(fields["num_samples"] / self.config.training.batch_size)
        return None

    def lr_changes(self) -> list[tuple[float, float]]:
        """(position in epochs, rate) of each --lr given to this run."""
        batches = self.batches_per_epoch
        return [
            (change.epoch + (change.batch / batches if batches else 0), change.rate)
            for change in rate_changes(self.config.training)
        ]


def load_runs(paths) -> list[Run]:
    """The runs of `paths` (run directories), labelled by their names, or by as much of
    their paths as tells them apart."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise UserError("name at least one run directory")
    labels = _labels(paths)
    return [_load_run(path, label) for path, label in zip(paths, labels, strict=True)]


def _load_run(path: Path, label: str) -> Run:
    settle_run_dir(path)  # a rewind cut short is finished before its history is read
    if not (path / HISTORY_FILE).is_file():
        raise UserError(
            f"{path} is not a run directory with a history (no {HISTORY_FILE}): train.py "
            f"writes one after each epoch"
        )
    if not (path / CONFIG_FILE).is_file():
        raise UserError(f"{path} has no {CONFIG_FILE}: not a run directory of train.py")
    history = _checked_history(read_json(path / HISTORY_FILE), path / HISTORY_FILE)
    config = load_config(path / CONFIG_FILE)
    info_path = path / RUN_INFO_FILE
    data = _checked_data(read_json(info_path), info_path) if info_path.is_file() else {}
    return Run(label, path, history, config, data)


# Bounds of what a history can hold: epochs counted from 1, increasing; an epoch's
# seconds under a year.
MAX_EPOCH = 10**7
MAX_EPOCH_SECONDS = 365 * 24 * 3600


def _checked_history(history, path: Path) -> dict:
    """history.json as train.py writes it: columns of one value (a number, or null) per
    epoch, `epoch` counting whole epochs upwards, `seconds` a duration; anything else is
    a one-line error naming the column. A non-finite value (NaN, Infinity) reads as null,
    as train.py writes one."""
    columns = history if isinstance(history, dict) else {}
    epochs = columns.get("epoch")
    if not isinstance(epochs, list) or not all(
        type(epoch) is int and 1 <= epoch < MAX_EPOCH for epoch in epochs
    ):
        _damaged(path, f"epoch must list whole epochs from 1 to {MAX_EPOCH - 1}")
    if any(later <= earlier for earlier, later in zip(epochs, epochs[1:], strict=False)):
        _damaged(path, "epoch must count upwards")
    check_columns(columns, path, REWRITTEN)
    cleaned = {name: list(map(_finite_or_none, values)) for name, values in columns.items()}
    seconds = [value for value in cleaned.get("seconds", []) if value is not None]
    if not all(0 <= value < MAX_EPOCH_SECONDS for value in seconds):
        _damaged(path, f"seconds must be durations from 0 to {MAX_EPOCH_SECONDS}")
    return cleaned


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


REWRITTEN = "train.py rewrites it at the next epoch"


def _damaged(path: Path, what: str):
    raise UserError(f"{path} is damaged: {what}; {REWRITTEN}")


def _checked_data(info, path: Path) -> dict:
    """run_info.json's `data`: split file -> its fingerprint fields, each of its type."""
    data = info.get("data", {})
    if not isinstance(data, dict):
        raise UserError(f"{path} is damaged: data must be a table of split files")
    for file, fields in data.items():
        fits = (
            isinstance(fields, dict)
            and type(fields.get("num_samples", 0)) is int
            and fields.get("num_samples", 0) >= 0
            and isinstance(fields.get("sha256_labels_and_edges", ""), str)
        )
        if not fits:
            raise UserError(
                f"{path} is damaged: data[{file!r}] must hold num_samples (a count) and "
                f"sha256_labels_and_edges (text)"
            )
    return data


def _labels(paths: list[Path]) -> list[str]:
    """Each run's shortest distinguishing tail of its path (its name when names differ)."""
    for depth in range(1, max(len(path.parts) for path in paths) + 1):
        labels = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(path) for path in paths]


def summarize(run: Run) -> dict:
    """One run's row: validation rank-1/rank-5 best (with its epoch) and final, epochs,
    training time, its --lr changes and the fingerprints of its data."""
    history = run.history
    epochs = history.get("epoch", [])
    row = {
        "run": run.label,
        "path": str(run.path),
        "model": _network_name(run.config.model),
        "epochs": epochs[-1] if epochs else 0,
        "schedule": run.config.training.schedule,
        # Where each change was made, in the words of train.log and the progress line
        # ("epoch 11, batch 1": the first batch at the new rate); `at`: in epochs, for
        # the plot's axis.
        "lr_changes": [
            {
                "from": describe_position(change.position),
                "at": where,
                "rate": rate,
                "before": dict(change.before),
            }  # fmt: skip
            for change, (where, rate) in zip(
                rate_changes(run.config.training), run.lr_changes(), strict=True
            )
        ],
    }
    for metric, name in (("val_accuracy", "rank_1"), ("val_rank5", "rank_5")):
        values = history.get(metric) or []
        # None: an epoch without this metric (e.g. trained before a val split existed).
        known = [index for index, value in enumerate(values) if value is not None]
        best = max(known, key=values.__getitem__) if known else None
        row[f"best_{name}"] = values[best] if known else None
        row[f"best_{name}_epoch"] = epochs[best] if known else None
        row[f"final_{name}"] = values[-1] if values else None
    seconds = history.get("seconds") or []
    # Epochs trained before epochs were timed have no seconds: no total rather than a
    # wrong one.
    timed = len(seconds) == len(epochs) and None not in seconds
    row["training_seconds"] = sum(seconds) if epochs and timed else None
    row["data"] = {}
    roles = {run.config.data.train_split: "train", run.config.data.val_split: "val"}
    for path, fields in run.data.items():
        role = roles.get(Path(path).stem, Path(path).name)
        row["data"][role] = {
            "file": str(path),
            "num_samples": fields.get("num_samples"),
            "fingerprint": (fields.get("sha256_labels_and_edges") or "")[:12] or None,
        }
    return row


def _network_name(model) -> str:
    """The preset's name, or what model.spec describes: 'bottleneck ResNet-5'."""
    if model.preset and not model.spec:
        return model.preset
    spec = model.network()
    name = f"{spec.block} {'pre-activation ' if spec.preactivation else ''}ResNet-{spec.depth}"
    return f"{model.preset} as {name}" if model.preset else name


def data_note(rows: list[dict]) -> str | None:
    """A warning when the runs did not train, or validate, on the same data."""

    def prints(role):
        return {(row["data"].get(role) or {}).get("fingerprint") for row in rows}

    if len(prints("train")) > 1:
        return "the runs did not train on the same data (see the fingerprints): compare with care"
    if len(prints("val")) > 1:
        return (
            "the runs were validated on different data, or some without a val split: "
            "their validation figures do not compare"
        )
    return None


def format_table(rows: list[dict]) -> str:
    """The rows as a text table, then each run's --lr changes and data fingerprints."""
    header = (
        f"{'run':24} {'epochs':>6} {'best val rank-1':>17} {'final':>7} "
        f"{'best val rank-5':>17} {'final':>7} {'time':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['run'][:24]:24} {row['epochs']:>6} "
            f"{_best(row, 'rank_1'):>17} {_percent(row['final_rank_1']):>7} "
            f"{_best(row, 'rank_5'):>17} {_percent(row['final_rank_5']):>7} "
            f"{_duration(row['training_seconds']):>9}"
        )
    lines.append("")
    for row in rows:
        changes = ", ".join(_describe_change(change) for change in row["lr_changes"])
        data = ", ".join(
            f"{role} {fields['num_samples']} ({fields['fingerprint']})"
            for role, fields in row["data"].items()
        )
        changes = f"; {changes}" if changes else ""
        lines.append(
            f"{row['run']}: {row['model']}, {row['schedule']} rate{changes}; "
            f"data: {data or 'not recorded'}"
        )
    note = data_note(rows)
    if note:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _describe_change(change: dict) -> str:
    """A rate change in the words of train.log: --lr, or a schedule changed on a resume
    (the rate kept, the rest of the curve rescaled)."""
    if change.get("before"):
        keys = ", ".join(change["before"])
        return f"{keys} changed from {change['from']}, rate kept at {change['rate']:g}"
    return f"--lr {change['rate']:g} from {change['from']}"


def _best(row: dict, name: str) -> str:
    value = row[f"best_{name}"]
    return "-" if value is None else f"{value:.2%} (ep {row[f'best_{name}_epoch']})"


def _percent(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02}:{second:02}"


def plot_comparison(runs: list[Run], path: Path) -> Path:
    """Loss, accuracy and learning rate of every run, aligned by epoch: one colour per
    run, training dashed and validation solid, each --lr marked and labelled."""
    figure, axes = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    panels = dict(zip(("loss", "accuracy", "learning rate"), axes, strict=True))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, run in enumerate(runs):
        colour = colours[index % len(colours)]
        for name, (x, y) in plot_series(run.history, run.lr_changes()).items():
            panel, label = name.split("/")
            axis = panels[panel]
            if label == "--lr":
                axis.plot(x, y, "v", color=colour, markersize=8)
                for where, rate in zip(x, y, strict=True):
                    axis.annotate(f"{run.label}: --lr {rate:g}", (where, rate),
                                  textcoords="offset points", xytext=(4, 6), fontsize=8,
                                  color=colour)  # fmt: skip
            elif panel == "learning rate":
                axis.plot(x, y, color=colour, drawstyle="steps-post", label=run.label)
            else:
                style = "--" if label.startswith("train") else "-"
                axis.plot(x, y, style, color=colour, label=f"{run.label}: {label}")
    for panel, axis in panels.items():
        axis.set_ylabel(panel)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7, ncol=2)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"{len(runs)} runs: training dashed, validation solid")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def compare_runs(paths, output_dir) -> tuple[list[dict], str, Path, Path]:
    """Load the runs, write the picture and the JSON table into `output_dir`; return the
    rows, the text table and the two paths."""
    runs = load_runs(paths)
    rows = [summarize(run) for run in runs]
    output_dir = Path(output_dir)
    picture = plot_comparison(runs, output_dir / PICTURE_FILE)
    table = output_dir / TABLE_FILE
    write_json_atomically(table, {"runs": rows, "note": data_note(rows)})
    return rows, format_table(rows), picture, table
