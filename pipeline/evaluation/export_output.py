"""What an export's --output may be: the description (card) written beside every export,
and the checks that keep --overwrite to replacing a previous export and nothing else.

--overwrite replaces only a previous export of export.py, recognised by the description
written beside it (`card_path`): never a run directory, the current folder or one above
it, the repository, a link, or a file or folder that description does not vouch for.
"""

import json
import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import UserError
from pipeline.evaluation.export_formats import FORMATS, INPUT_NAME, OUTPUT_NAME, ExportRequest
from pipeline.runs.run_dir import (
    ABANDONED_DIR,
    BEST,
    CHECKPOINT_PATTERN,
    INTERRUPT,
    LOCK_FILE,
    RECORDS,
)

# The description says who wrote it: --overwrite replaces only what export.py wrote.
WRITTEN_BY = "export.py"
# A description larger than this is not one export.py wrote (those are a few KiB): more
# than this is never read.
CARD_LIMIT_BYTES = 1 << 20
# What a SavedModel folder holds; a folder holding anything else is not only an export.
SAVED_MODEL_ENTRIES = frozenset(
    {"saved_model.pb", "variables", "assets", "fingerprint.pb", "keras_metadata.pb"}
)
# A folder holding any of these (or an epoch_N.keras) is a training run or holds one
# (output/checkpoints): never replaced.
RUN_ENTRIES = frozenset({*RECORDS, INTERRUPT, BEST, LOCK_FILE, ABANDONED_DIR, "checkpoints"})
REPOSITORY = Path(__file__).resolve().parents[2]


def card_path(output: Path) -> Path:
    """The JSON description written beside an export: who wrote it for which file, the
    format, classes, input, the check."""
    return Path(f"{output}.json")


def check_output(request: ExportRequest, sources: Iterable = ()) -> None:
    """Refuse an --output that holds anything but a previous export of export.py (and,
    without --overwrite, even that). Reads only: whatever is there is left as it was."""
    output, card = request.output, card_path(request.output)
    if output.is_symlink():
        raise UserError(_not_an_export(output, "is a symbolic link (never followed)"))
    present = output.exists()
    if present:
        _check_never_replaced(output, sources)
    if output.name in ("", ".", ".."):
        raise UserError(f"--output must name the export's own file or folder, got {output}")
    if not present and not (card.exists() or card.is_symlink()):
        return
    if not request.overwrite:
        _read_card(output)  # not an export: say so rather than suggest --overwrite
        raise UserError(f"{output if present else card} exists; pass --overwrite to replace it")
    description = _read_card(output)
    if present:
        _check_kind(output, description["format"])


def _check_never_replaced(output: Path, sources: Iterable) -> None:
    """What is never an export, card or not: the current folder or one above it, the
    repository or one above it, a run directory, a folder holding what the export reads."""
    where = output.resolve()
    if Path.cwd().resolve().is_relative_to(where):
        raise UserError(_not_an_export(output, "is the current folder or one above it"))
    if REPOSITORY.is_relative_to(where):
        raise UserError(_not_an_export(output, "is the repository or a folder above it"))
    if output.is_dir():
        entries = {entry.name for entry in output.iterdir()}
        run = sorted(entries & RUN_ENTRIES) + sorted(filter(CHECKPOINT_PATTERN.match, entries))
        if run:
            raise UserError(_not_an_export(output, f"is a run directory (it holds {run[0]})"))
    for source in sources:
        if source is not None and Path(source).resolve().is_relative_to(where):
            raise UserError(_not_an_export(output, f"is or holds {source}, which export reads"))


def _read_card(output: Path) -> dict:
    """The description beside a previous export, read as hostile input: anything but a
    small JSON object as export.py writes it, for this very file, is a refusal."""
    card = card_path(output)
    if card.is_symlink() or not card.exists():
        problem = "is a link" if card.is_symlink() else "is missing"
        raise UserError(_not_an_export(output, f"has no description ({card} {problem})"))
    if not card.is_file():
        raise UserError(_not_an_export(output, f"has no description ({card} is not a file)"))
    with open(card, "rb") as handle:
        content = handle.read(CARD_LIMIT_BYTES + 1)
    if len(content) > CARD_LIMIT_BYTES:
        problem = f"is over {CARD_LIMIT_BYTES // 1024} KiB"
    else:
        try:
            description = json.loads(content.decode("utf-8"))
        # RecursionError: a document nested thousands of levels deep.
        except (ValueError, RecursionError):
            problem = "is not JSON"
        else:
            problem = _card_problem(description, output)
    if problem:
        raise UserError(_not_an_export(output, f"has a description {card} that {problem}"))
    return description


def _card_problem(description, output: Path) -> str | None:
    """Why `description` is not the card of an export of export.py at `output`, or None.
    Cards written before the marker are recognised by their format, input and output."""
    if not isinstance(description, dict):
        return "is not a JSON object"
    if not (isinstance(description.get("format"), str) and description["format"] in FORMATS):
        return "names no export format"
    if "written_by" in description:
        if description["written_by"] != WRITTEN_BY:
            return "was not written by export.py"
        if description.get("file") != output.name:
            return f"describes another file than {output.name}"
        return None
    fields = [description.get(key) for key in ("input", "output")]
    names = [field.get("name") if isinstance(field, dict) else None for field in fields]
    if names != [INPUT_NAME, OUTPUT_NAME]:
        return "names no model input and output"
    return None


def _check_kind(output: Path, format: str) -> None:
    """The file or folder must be what its description says: a SavedModel folder holding
    nothing else, or a single file."""
    if format != "saved_model":
        if not output.is_file():
            raise UserError(_not_an_export(output, f"is not the {format} file its card describes"))
        return
    if not output.is_dir():
        raise UserError(_not_an_export(output, "is not the SavedModel folder its card describes"))
    entries = {entry.name for entry in output.iterdir()}
    others = sorted(entries - SAVED_MODEL_ENTRIES)
    if others or "saved_model.pb" not in entries:
        what = f"other content ({others[0]})" if others else "no saved_model.pb"
        raise UserError(_not_an_export(output, f"is a folder with {what}"))


def _not_an_export(output: Path, what: str) -> str:
    return (
        f"--output {output} {what}: not an export written by export.py (all that "
        f"--overwrite replaces), so it is left as it is; choose another --output"
    )


def check_writable(output: Path) -> None:
    """Refuse an output the export could not write (a read-only folder, a file where a
    folder should be) now, rather than after the model is loaded and converted."""
    folder = output.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"--output {output}: {folder} is not a folder; choose another --output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(
            f"--output {output}: {folder} is not writable (read-only or another user's); "
            f"choose another --output"
        )
