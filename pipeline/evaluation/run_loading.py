"""The runs a comparison reads (compare_runs.py): each run directory's history, config
and data fingerprints, read as untrusted input (a damaged file is a one-line error
naming it), and a label that tells the runs apart. No Keras, no plotting."""

import dataclasses
import math
from pathlib import Path

from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.runs.history import check_columns
from pipeline.runs.json_files import read_json
from pipeline.runs.learning_rate import rate_changes
from pipeline.runs.run_dir import CONFIG_FILE, HISTORY_FILE, RUN_INFO_FILE
from pipeline.runs.run_reading import settle_run_dir


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
