"""Several runs side by side: their curves and rates in one picture, and a table of best
and final validation rank-1/rank-5, epochs, training time and data fingerprints.
No Keras: everything comes from the run directories' files, read by
pipeline/evaluation/run_loading.py."""

from pathlib import Path

import matplotlib

from pipeline.evaluation.run_loading import Run, load_runs
from pipeline.runs.history import plot_series
from pipeline.runs.json_files import write_json_atomically
from pipeline.runs.learning_rate import describe_position, rate_changes

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PICTURE_FILE, TABLE_FILE = "comparison.png", "comparison.json"


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
