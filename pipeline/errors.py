"""User errors: one clear line, exit code 2, no traceback."""

import argparse
import functools
import sys
from collections.abc import Callable

USER_ERROR_EXIT_CODE = 2
# The shell's convention for a process ended by SIGINT (128 + 2).
INTERRUPTED_EXIT_CODE = 130
# ... and for a process ended by SIGTERM (128 + 15), after training saved its position.
TERMINATED_EXIT_CODE = 143
# Training stopped because its loss stopped being finite; the last good checkpoint stays.
DIVERGED_EXIT_CODE = 3


class UserError(Exception):
    """A problem with what the user asked for (a path, a value, a key), not a bug."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line, like every other user error.

    Abbreviated options are refused: `--epoch` silently meaning `--epochs`
    would hide typos in long-running commands.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")


def shown(text: str) -> str:
    """Text for one line of a terminal: control characters (a newline or NUL in a file
    name) and undecodable bytes as escapes, so a message stays one line."""
    return "".join(
        character if character.isprintable() else repr(character)[1:-1] for character in text
    )


def describe_os_error(error: OSError) -> str:
    """An operating-system error in one line: its message and the path it concerns."""
    message = " ".join(str(error.strerror or error).split()) or type(error).__name__
    where = error.filename
    if where is None:
        return message
    also = f" -> {error.filename2}" if error.filename2 else ""
    return f"{message}: {where}{also}"


def run_cli(main: Callable[[list[str] | None], object]) -> Callable[[list[str] | None], int]:
    """Wrap a script's main: a UserError or an operating-system error (no space, read-only,
    permission) prints 'error: ...' and exits with code 2; ctrl+c prints one line and
    exits with 130 (whatever was being written was cleaned up by the code that writes it)."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            code = main(argv)
        except UserError as error:
            print(f"error: {shown(str(error))}", file=sys.stderr)
            return USER_ERROR_EXIT_CODE
        except OSError as error:
            # Disk full, read-only folder, permission, file too large: what the system
            # said, and where; the writers have removed their temporary files.
            print(f"error: {shown(describe_os_error(error))}", file=sys.stderr)
            return USER_ERROR_EXIT_CODE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return INTERRUPTED_EXIT_CODE
        return code if isinstance(code, int) else 0

    return wrapped
