"""Checkpoints and their states: saving them, the latest pointer, and the schema a
state is read by (no Keras here: `save_checkpoint` is given the model)."""

import json
import math
import os
from pathlib import Path

from pipeline.datasets.hdf5_commit import fsync_directory, fsync_file
from pipeline.errors import UserError
from pipeline.runs.json_files import (
    MAX_STATE_BYTES,
    read_json,
    removed_on_error,
    write_json_atomically,
)
from pipeline.runs.run_dir import BEST, CHECKPOINT_PATTERN, INTERRUPT, LATEST, state_path


def save_checkpoint(model, path, *, epoch: int, batch: int = 0, extra=None) -> Path:
    """Save model (weights and optimizer) and its state file, each atomically.

    `epoch` counts completed epochs; `batch` the batches done in the next one
    (non-zero only for an interrupt). `extra` joins the state: the training
    loop adds the resolved config and the class names, so that a checkpoint
    says what it is without its run directory.
    """
    path = Path(path)
    # Keras insists on the .keras extension, so the temporary name keeps it.
    temporary = path.with_name(f".{path.stem}.partial.keras")
    state = {"checkpoint": path.name, "epoch": epoch, "batch": batch, **(extra or {})}
    sidecar = state_path(path)
    staged_state = sidecar.with_name(f".{sidecar.name}.partial")
    with removed_on_error(temporary, path):
        model.save(temporary)
        fsync_file(temporary)
        with removed_on_error(staged_state, sidecar):
            staged_state.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            fsync_file(staged_state)
            # The old state goes first: a crash between the renames leaves new weights
            # without a state (refused, or read from an epoch_N name), never with the
            # position of the weights they replaced.
            sidecar.unlink(missing_ok=True)
            os.replace(temporary, path)
            os.replace(staged_state, sidecar)
    fsync_directory(path.parent)
    return path


def point_latest(run_dir, checkpoint) -> None:
    """Record `checkpoint` as the one to resume from."""
    state = read_state(checkpoint)
    write_json_atomically(
        Path(run_dir) / LATEST,
        {"checkpoint": Path(checkpoint).name, "epoch": state["epoch"], "batch": state["batch"]},
    )


def read_state(checkpoint) -> dict:
    """(epoch, batch) of a checkpoint: from its state file, else from an epoch_N name.
    A damaged state file is a one-line error naming it."""
    checkpoint = Path(checkpoint)
    sidecar = state_path(checkpoint)
    if sidecar.is_file():
        state = read_json(sidecar, MAX_STATE_BYTES)
        check_state(state, sidecar)
        return state
    match = CHECKPOINT_PATTERN.match(checkpoint.name)
    if match is None and checkpoint.name in (INTERRUPT, BEST):
        # Its position is known only from its state: a save cut short left none.
        raise UserError(f"{checkpoint} has no state file {sidecar.name} (its save was cut short)")
    return {"checkpoint": checkpoint.name, "epoch": int(match.group(1)) if match else 0, "batch": 0}


def _whole(low: int, high: int = 10**9):
    def check(value):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value < high:
            return f"a whole number from {low} to {high - 1}"

    return check


def _number(low: float, *, above: bool = False):
    def check(value):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value) or value < low or (above and value == low):
            return f"a finite number {'>' if above else '>='} {low:g}"

    return check


def _text(value):
    if not isinstance(value, str):
        return "text"


def _table(value):
    if not isinstance(value, dict):
        return "a table (JSON object)"


def _list(value):
    if not isinstance(value, list):
        return "a list"


def _texts(value):
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return "a list of text"


def _metric_states(value):
    """[[variable values, ...] per metric]: numbers, or lists of numbers (a confusion)."""

    def numbers(item):
        if isinstance(item, list):
            return all(numbers(inner) for inner in item)
        return isinstance(item, int | float) and not isinstance(item, bool) and math.isfinite(item)

    if not isinstance(value, list) or not all(isinstance(metric, list) for metric in value):
        return "a list of lists of numbers"
    if not all(numbers(metric) for metric in value):
        return "a list of lists of finite numbers"


def _plateau(value):
    """ResumablePlateau's counters: best (a number or null), wait and cooldown_counter."""
    if not isinstance(value, dict):
        return "a table (JSON object)"
    best = value.get("best")
    counts = [value.get(key, 0) for key in ("wait", "cooldown_counter")]
    best_ok = best is None or (
        isinstance(best, int | float) and not isinstance(best, bool) and math.isfinite(best)
    )
    counts_ok = all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts)
    if not (best_ok and counts_ok):
        return "a table of best (a number or null), wait and cooldown_counter (counts)"


def _optional(check):
    return lambda value: None if value is None else check(value)


# A checkpoint's state: each field training writes, and what it must be. Fields it does
# not know are left alone (a later version's); the consumers read these only.
STATE_FIELDS = {
    "checkpoint": _text,
    "epoch": _whole(0),
    "batch": _whole(0),
    "config": _table,
    "class_names": _texts,
    "workers": _whole(1, 100_000),
    "epoch_seconds": _number(0),
    "epoch_rate": _optional(_number(0)),  # 0 where a warm-up starts or a decay ends
    "metric_states": _metric_states,
    "plateau": _plateau,
    "data_build_id": _optional(_text),
    "metric": _text,
    "value": _number(-math.inf),
}
# The sections of the config inside a state that readers look into, and their fields.
STATE_CONFIG_FIELDS = {
    "data": {"dataset_dir": _text, "dataset": _text, "test_split": _text, "train_split": _text},
    "training": {
        "batch_size": _whole(1),
        "rate_changes": lambda v: _texts([]) if isinstance(v, list) else "a list",
    },
    "model": {},
    "expected": {},
}


def check_state(state: dict, path: Path) -> None:
    """Every field of a checkpoint's state that training writes, of its type and range;
    a wrong one is a one-line error naming the file and the field."""
    for key in ("epoch", "batch"):
        if key not in state:
            raise UserError(f"{path} is damaged (no {key}); move it away")
    for key, check in STATE_FIELDS.items():
        if key in state:
            _check_field(check, state[key], path, key)
    config = state.get("config") or {}
    for section, fields in STATE_CONFIG_FIELDS.items():
        if section not in config:
            continue
        _check_field(_table, config[section], path, f"config.{section}")
        for key, check in fields.items():
            if key in config[section]:
                _check_field(check, config[section][key], path, f"config.{section}.{key}")


def _check_field(check, value, path: Path, key: str) -> None:
    expected = check(value)
    if expected:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise UserError(f"{path} is damaged: {key} must be {expected}, got {shown}; move it away")
