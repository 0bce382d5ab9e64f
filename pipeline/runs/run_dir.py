"""The run directory: checkpoints and their state, the latest pointer, the lock, the record.

    epoch_0005.keras  epoch_0005.json    checkpoint after 5 epochs, and its state
    interrupt.keras   interrupt.json     checkpoint of a ctrl+c (epoch, batch)
    best.keras        best.json          best value of training.best_metric
    latest.json                          which checkpoint to resume from
    config.json                          the config the run trains with now (--lr changes
                                         included); rewritten at every start
    run_info.json                        package versions, git commit, data fingerprints
    history.json history.csv training.png   one row per epoch (pipeline/runs/history.py)
    train.log                            every start, resume, change, interrupt and end
    train.lock                           held while a run trains here
    abandoned/                           the branches a rewind (--start_epoch, --model) left
    logs/                                TensorBoard's, with training.tensorboard
    worker_1/ ...                        each other worker's copy of a multi-worker run

Every file is written to a temporary name and renamed, so a crash never leaves
a half-written checkpoint, state or pointer that a reader could take.
"""

import contextlib
import datetime
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pipeline.datasets.hdf5_format import fsync_directory, fsync_file, open_split
from pipeline.errors import UserError

CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d+)\.keras$")
INTERRUPT = "interrupt.keras"
BEST = "best.keras"
LATEST = "latest.json"
CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.json"
LOCK_FILE = "train.lock"
HISTORY_FILE = "history.json"
CSV_FILE = "history.csv"
PLOT_FILE = "training.png"
LOG_FILE = "train.log"
ABANDONED_DIR = "abandoned"
TENSORBOARD_DIR = "logs"
# A multi-worker run's worker K keeps its own copy of the run in worker_K/.
WORKER_DIR_PREFIX = "worker_"
# The records of a run, beside its checkpoints.
RECORDS = (LATEST, HISTORY_FILE, CSV_FILE, PLOT_FILE, CONFIG_FILE, RUN_INFO_FILE, LOG_FILE)
PACKAGES = ("keras", "tensorflow", "jax", "numpy", "h5py", "opencv-python-headless")


def checkpoint_path(run_dir, epoch: int) -> Path:
    """The checkpoint written after `epoch` completed epochs."""
    return Path(run_dir) / f"epoch_{epoch:04d}.keras"


def state_path(checkpoint) -> Path:
    return Path(checkpoint).with_suffix(".json")


def list_checkpoints(run_dir) -> dict[int, Path]:
    """Completed epoch checkpoints in a run directory, by epoch (partial writes excluded)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    found = {}
    for path in run_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


# The most a run file of each kind may hold (bytes): far above what training writes (a
# state with its config and metric sums is a few KiB; a history ~300 bytes an epoch),
# far below what reading it whole would cost. A larger file is refused unread.
MAX_JSON_BYTES = {
    LATEST: 64 * 1024,
    CONFIG_FILE: 4 * 1024**2,
    RUN_INFO_FILE: 4 * 1024**2,
    HISTORY_FILE: 64 * 1024**2,
}
MAX_STATE_BYTES = 16 * 1024**2


def read_json(path, limit: int | None = None) -> dict:
    """A JSON object file of the run directory, read as untrusted input: larger than
    `limit` (default: by kind, MAX_JSON_BYTES), not UTF-8 JSON, nested too deep or not
    an object is a one-line error naming it."""
    path = Path(path)
    limit = limit or MAX_JSON_BYTES.get(path.name, MAX_STATE_BYTES)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a file; move it away and retry") from None
    if len(data) > limit:
        raise UserError(f"{path} is over {limit} bytes, more than a run writes; move it away")
    try:
        values = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        problem = "nested too deep" if isinstance(error, RecursionError) else error
        raise UserError(f"{path} is damaged ({problem}); move it away and retry") from None
    if not isinstance(values, dict):
        raise UserError(f"{path} is damaged (not a JSON object); move it away and retry")
    return values


def append_log(run_dir, line: str) -> None:
    """Append a line, with the time, to the run's train.log."""
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with open(Path(run_dir) / LOG_FILE, "a", encoding="utf-8") as handle:
        handle.write(f"{stamp} {line}\n")


def strict_json(content, path) -> str:
    """`content` as strict JSON: a non-finite number (NaN, Infinity: tokens JSON does not
    have) is written as null, with a note on stderr naming the file and where."""
    replaced = []

    def clean(value, where):
        if isinstance(value, float) and not math.isfinite(value):
            replaced.append(where or "the value")
            return None
        if isinstance(value, dict):
            return {key: clean(item, f"{where}.{key}".lstrip(".")) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return value

    text = json.dumps(clean(content, ""), indent=2, allow_nan=False)
    if replaced:
        shown = ", ".join(replaced[:5]) + (
            f" and {len(replaced) - 5} more" if len(replaced) > 5 else ""
        )
        _warn(f"{path}: non-finite values written as null: {shown}")
    return text


def write_json_atomically(path: Path, content) -> None:
    """Write to a temporary name, flush it to disk, then rename: a crash or power cut
    leaves the old file or the new one, never an empty or half-written one. The JSON is
    strict (`strict_json`)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    text = strict_json(content, path)
    with removed_on_error(temporary, path):
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    fsync_directory(path.parent)


@contextlib.contextmanager
def removed_on_error(temporary: Path, target=None):
    """Delete a temporary file when writing it fails (no space, file too large): a failed
    write leaves the previous file and nothing half-written. An error that names no file
    (zipfile's, h5py's) is given the name of the file being written (`target`)."""
    try:
        yield temporary
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        if error.filename is None and target is not None:
            raise OSError(error.errno, error.strerror or str(error), str(target)) from error
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


def latest_checkpoint(run_dir) -> Path | None:
    """The checkpoint latest.json points at, else the newest epoch checkpoint, else None.

    A damaged latest.json, or a damaged state of the checkpoint it leads to, is a
    one-line error naming the file: passing over it would resume (or score) an older
    checkpoint without a word, losing what the damaged file pointed to. A latest.json
    naming a checkpoint that is gone falls back to the newest one, with a warning.
    """
    run_dir = Path(run_dir)
    settle_run_dir(run_dir)
    pointer = run_dir / LATEST
    if pointer.is_file():
        candidate = _pointed_checkpoint(run_dir, pointer)
        if candidate is not None:
            read_state(candidate)  # a damaged state: one line naming it
            return candidate
    checkpoints = list(list_checkpoints(run_dir).values())
    if not checkpoints:
        return None
    read_state(checkpoints[-1])
    return checkpoints[-1]


def settle_run_dir(run_dir: Path, locked: bool = False) -> None:
    """Finish a multi-file change of the run directory cut short (a rewind or an
    --overwrite killed half-way), so that what is read next is its new state.

    Only under the run's lock (`locked`: the caller holds it): a reader takes it for
    the moment, and where a training run holds it, that run finishes the change itself
    and the reader reads the directory as it is."""
    from pipeline.runs.run_change import PENDING, finish_pending_change  # it builds on this one

    run_dir = Path(run_dir)
    if not (run_dir / PENDING).is_file():
        return
    try:
        if locked:
            finish_pending_change(run_dir)
            return
        with _lock_if_free(run_dir) as free:
            if free:
                finish_pending_change(run_dir)
    except OSError as error:  # a read-only copy of a run: read it as it is
        _warn(f"could not finish the change pending in {run_dir} ({error}); reading it as is")


@contextlib.contextmanager
def _lock_if_free(run_dir: Path):
    """The run's lock, if no training run holds it: yields whether it was taken. A lock
    file made for the moment goes again, as training's does."""
    path = run_dir / LOCK_FILE
    made = not path.exists()
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            if made:
                path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pointed_checkpoint(run_dir: Path, pointer: Path) -> Path | None:
    """The checkpoint latest.json names: a file of this run directory, by name only
    (None, with a warning: it is gone)."""
    name = read_json(pointer).get("checkpoint")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".keras"):
        raise UserError(
            f"{pointer} is damaged: checkpoint must name a .keras file of {run_dir}, got "
            f"{str(name)[:60]!r}; move it away to use the newest epoch checkpoint"
        )
    candidate = run_dir / name
    if not candidate.is_file():
        _warn(f"{pointer} names {name}, which is not there; using the newest checkpoint")
        return None
    return candidate


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold the run directory for one training run; a second run on it is refused.

    An OS file lock, so a crashed run never leaves a stale lock behind; the file goes at
    every exit, and a run directory this start created is removed again when the start
    wrote nothing into it (a refused start leaves no new folder behind).
    """
    run_dir = Path(run_dir)
    created = _first_missing(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = _take_lock(run_dir / LOCK_FILE, run_dir)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        # Removed while still held: a run starting now creates and locks a new file.
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        if created is not None:
            _remove_empty_folders(run_dir, created)


def _take_lock(path: Path, run_dir: Path):
    """The lock file, open and locked. A run that ends removes its lock file while it
    holds it: a file locked after that is no longer the run directory's (its name now
    leads to another, or none), so the lock is taken again on the file that is there."""
    for _attempt in range(10):
        # Not a with-block: the handle must stay open, and locked, for the whole run.
        handle = open(path, "a+")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(
                f"another training run (pid {holder}) is using {run_dir}; wait for it to "
                f"end or choose another --checkpoints"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            return handle
        handle.close()  # the file that was removed: try the one there now
    raise UserError(f"could not take the lock of {run_dir}; retry")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None: it exists)."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_empty_folders(path: Path, up_to: Path) -> None:
    """Remove `path` and its parents up to `up_to`, as long as they are empty."""
    for folder in [path, *path.parents]:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (the run wrote there), or already gone
        if folder == up_to:
            return


def write_run_info(run_dir, config_dict: dict, data_files) -> Path:
    """config.json, and run_info.json: package versions, git commit, data fingerprints."""
    run_dir = Path(run_dir)
    write_json_atomically(run_dir / CONFIG_FILE, config_dict)
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "git_commit": _git_commit(),
        "data": {str(path): fingerprint(path) for path in data_files},
    }
    write_json_atomically(run_dir / RUN_INFO_FILE, info)
    return run_dir / RUN_INFO_FILE


def fingerprint(path) -> dict:
    """A quick identity of a split file: its metadata and a hash of its labels and first
    and last image chunks (hashing a 100 GB file would take longer than it is worth)."""
    with open_split(path) as handle:
        images, labels = handle["images"], handle["labels"]
        digest = hashlib.sha256(labels[()].tobytes())
        rows = images.chunks[0] if images.chunks else 1
        for part in (images[:rows], images[-rows:]):
            for item in part if images.dtype == object else [part]:
                digest.update(item.tobytes())
        return {
            "bytes": Path(path).stat().st_size,
            "num_samples": int(labels.shape[0]),
            "source": str(handle.attrs["source"]),
            "format_version": int(handle.attrs["format_version"]),
            "sha256_labels_and_edges": digest.hexdigest(),
        }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the pipeline's own checkout, with '+dirty' for local changes."""
    repository = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repository), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(repository), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")
