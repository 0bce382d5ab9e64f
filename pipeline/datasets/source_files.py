"""Source files named on the command line or inside a source (archives, label files,
annotation lists), opened as untrusted input (no Keras).

A FIFO would block `open` forever, `/dev/zero` (or a link to it) is an endless file,
and a huge file read whole takes all memory. So a source file must be a regular file
(links followed), of at most a size stated per kind, opened without blocking and
checked again on the open descriptor (it cannot be swapped between the check and
the read); text is read whole within that size, in lines of bounded length.
"""

import io
import os
import stat
from pathlib import Path

from pipeline.errors import UserError

# Size caps, by kind of source file: far above the official files, far below memory.
MAX_ARCHIVE_BYTES = 2 * 1024**3  # the CIFAR archives are 163 MB (CIFAR-10), 161 MB (100)
MAX_TEXT_BYTES = 256 * 1024**2  # ImageNet's LOC_val_solution.csv is 2.5 MB; words.txt 2.6 MB
MAX_LINE_CHARACTERS = 64 * 1024


def open_source_file(path, what: str, max_bytes: int = MAX_ARCHIVE_BYTES):
    """`path` opened for reading in binary, if it is a regular file of at most `max_bytes`;
    else a one-line UserError naming it as `what` (e.g. '--source')."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except OSError as error:
        raise UserError(f"{what} {path} cannot be opened ({error.strerror})") from None
    try:
        _check_regular(os.fstat(descriptor), path, what, max_bytes)
        # Blocking again, for the reads of a regular file.
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_source_text(path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file of a source, whole, with every line at most
    MAX_LINE_CHARACTERS long (an endless line is refused, not read)."""
    with open_source_file(path, what, max_bytes) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew since it was checked
        raise UserError(f"{what} {path} is larger than {max_bytes} bytes; not a source file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {error.start})") from None
    for number, line in enumerate(io.StringIO(text), start=1):
        if len(line) > MAX_LINE_CHARACTERS:
            raise UserError(
                f"{what} {path} line {number} is over {MAX_LINE_CHARACTERS} characters; "
                f"not a label or annotation file"
            )
    return text


def _check_regular(status: os.stat_result, path: Path, what: str, max_bytes: int) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise UserError(
            f"{what} {path} is {_kind(status.st_mode)}, not a regular file; name the "
            f"downloaded file itself"
        )
    if status.st_size > max_bytes:
        raise UserError(
            f"{what} {path} is {status.st_size} bytes, over the {max_bytes} that this kind "
            f"of source file may have; not the official file"
        )


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")
