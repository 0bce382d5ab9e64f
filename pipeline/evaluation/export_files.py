"""The export's files on disk: a checked export installed under its final name without
ever losing the previous one, a leftover removed, and a failed write (no space,
read-only) made an OSError naming the export, which the scripts print in one line.
"""

import contextlib
import os
import re
import shutil
from pathlib import Path


@contextlib.contextmanager
def os_error_naming(output: Path):
    """A write that fails (no space, read-only) comes out of TensorFlow as its own error or
    as one raised from an OSError, with pages of traceback: make it an OSError naming the
    export, which the scripts print in one line."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(output)) from error
    except Exception as error:
        cause = _os_error_behind(error)
        if cause is not None:
            raise OSError(cause.errno, cause.strerror or str(cause), str(output)) from error
        if _is_tensorflow_storage_error(error):
            raise OSError(None, _tensorflow_message(error), str(output)) from error
        raise


def _os_error_behind(error: BaseException) -> OSError | None:
    """The OSError an exception was raised from (`raise ... from`), if any. Not one it was
    merely raised while handling: that may be a probe that failed on purpose."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


# TensorFlow's codes for a failed file operation (its POSIX file system maps errno to
# them): EACCES, EPERM and EROFS are PERMISSION_DENIED, ENOSPC and EDQUOT
# RESOURCE_EXHAUSTED, EFBIG OUT_OF_RANGE.
STORAGE_ERROR_CODES = {"PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "OUT_OF_RANGE": 11}


def _is_tensorflow_storage_error(error: BaseException) -> bool:
    """A TensorFlow OpError about storage, recognised without importing TensorFlow."""
    module = type(error).__module__ or ""
    code = getattr(error, "error_code", None)
    return module.startswith("tensorflow") and code in STORAGE_ERROR_CODES.values()


def _tensorflow_message(error: BaseException) -> str:
    """What went wrong, from the first line of a TensorFlow error, without the function,
    temporary file and op it names:
    '{{function_node ...}} PATH; No space left on device [Op:SaveV2]' -> 'No space ...'."""
    message = str(getattr(error, "message", "") or error).strip()
    first = (message.splitlines() or [type(error).__name__])[0]
    first = re.sub(r"\s*\[Op:\w+\]$", "", re.sub(r"^\{\{.*?\}\}\s*", "", first))
    # 'PATH; reason': PATH is a temporary file inside the export, which the error names.
    return first.rpartition("; ")[2] or type(error).__name__


def install(staging: Path, output: Path) -> None:
    """Give the checked export its final name, replacing a previous export whole (only one
    check_output accepted). A failure half-way leaves the old export or the new one under
    the final name, never neither: the old one is moved aside, the new one renamed in, and
    only then is the old one deleted."""
    if staging.is_file() and (output.is_file() or not output.exists()):
        os.replace(staging, output)  # one step: the old file or the new one, always
        return
    previous = output.with_name(f".{output.name}.previous")
    remove(previous)  # a crashed export's leftover
    if output.exists():
        output.rename(previous)
    try:
        staging.rename(output)
    except BaseException:
        if previous.exists() and not output.exists():
            previous.rename(output)  # the old export back under its name
        raise
    remove(previous)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
