"""The JSON files of a run directory: read as untrusted input, with a size limit for
each kind, and written strict and atomically (no Keras here)."""

import contextlib
import json
import math
import os
from pathlib import Path

from pipeline.datasets.hdf5_commit import fsync_directory
from pipeline.errors import UserError
from pipeline.runs.run_dir import CONFIG_FILE, HISTORY_FILE, LATEST, RUN_INFO_FILE, warn

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
        warn(f"{path}: non-finite values written as null: {shown}")
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
