"""Export a checkpoint for serving (SavedModel, ONNX, TFLite) and check the exported file.

The exported model is the whole network, normalisation included: it takes float32 RGB
pixels 0-255 of shape (batch, height, width, 3) and returns class probabilities. After
writing, the exported file runs on samples of the checkpoint's data set beside the
Keras model; above the tolerance nothing is kept. Files are written under a temporary
name and renamed only once checked, so a half-written export never has the final name.

--overwrite replaces only a previous export of export.py, recognised by the description
written beside it (`card_path`): never a run directory, the current folder or one above
it, the repository, a link, or a file or folder that description does not vouch for.
"""

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pipeline.errors import UserError
from pipeline.framework import stderr_held
from pipeline.runs.run_dir import (
    ABANDONED_DIR,
    BEST,
    CHECKPOINT_PATTERN,
    INTERRUPT,
    LOCK_FILE,
    RECORDS,
    write_json_atomically,
)

FORMATS = ("saved_model", "onnx", "tflite")
# Packages each format needs, beside Keras: (import name, what to install).
NEEDS = {
    "saved_model": [("tensorflow", "tensorflow")],
    "onnx": [("tensorflow", "tensorflow"), ("tf2onnx", "tf2onnx"), ("onnxruntime", "onnxruntime")],
    "tflite": [("tensorflow", "tensorflow")],
}
# Largest difference in any class probability allowed between the exported model and
# the checkpoint. float32 files agree to rounding (the demo's digits model: 0 as a
# SavedModel, 1.2e-6 as ONNX, 1.4e-6 as TFLite); float16 weights (TFLite only) moved
# its probabilities by up to 6e-3.
TOLERANCES = {"float32": 1e-4, "float16": 3e-2}
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
ONNX_OPSET = 17
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
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    format: str
    output: Path
    # None: any batch size; N: every call takes exactly N images.
    batch_size: int | None = None
    float16: bool = False
    tolerance: float | None = None
    overwrite: bool = False
    # Images of the checkpoint's data the exported file is checked on.
    samples: int = 256

    @property
    def precision(self) -> str:
        return "float16" if self.float16 else "float32"

    @property
    def allowed_difference(self) -> float:
        return self.tolerance if self.tolerance is not None else TOLERANCES[self.precision]


def check_request(request: ExportRequest, backend: str, sources: Iterable = ()) -> None:
    """Refuse what cannot be exported before any model is loaded (one line each).
    `sources`: the checkpoint, run directory and data the export reads; no folder holding
    them is replaced."""
    if request.format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {request.format!r}")
    if request.float16 and request.format != "tflite":
        raise UserError(f"--float16 is available for tflite only, not {request.format}")
    if request.batch_size is not None and request.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {request.batch_size}")
    if request.samples < 1:
        raise UserError(f"--samples must be >= 1 (the check runs them), got {request.samples}")
    # `not >=`: NaN is refused too; infinity would pass any export and is no JSON number.
    tolerance = request.tolerance
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
        raise UserError(f"--tolerance must be a finite number >= 0, got {tolerance:g}")
    if request.format == "tflite" and request.output.suffix != ".tflite":
        raise UserError(f"a tflite export's --output must end in .tflite, got {request.output}")
    if backend not in ("tensorflow", "jax"):
        raise UserError(
            f"export runs on the tensorflow or jax backend, not KERAS_BACKEND={backend}"
        )
    for module, package in NEEDS[request.format]:
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"--format {request.format} needs the {package} package, which is not "
                f"installed: pip install '.[export]' (or pip install {package})"
            )
    check_output(request, sources)
    check_writable(request.output)


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


def export_and_check(model, images: np.ndarray, request: ExportRequest, card: dict) -> dict:
    """Write `model` in the requested format, run it on `images` beside the Keras model,
    and keep it (with `card`, a JSON description beside it) only within the tolerance.
    Returns the card with the check's figures, and who wrote it for what file."""
    output = request.output
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.stem}.partial{output.suffix}")
    _remove(staging)
    try:
        with _os_error_naming(output):
            write_format(model, staging, request)
        run = exported_runner(staging, request.format)
        check = compare(model, run, images, request)
        # `not <=`: a NaN difference (an exported model that computes NaN) fails too.
        if not check["max_difference"] <= request.allowed_difference:
            raise UserError(
                f"the exported {request.format} model differs from the checkpoint by up to "
                f"{check['max_difference']:.3g} in a class probability over "
                f"{check['samples']} samples (tolerance {request.allowed_difference:g}); "
                f"nothing was written"
            )
        card = {"written_by": WRITTEN_BY, "file": output.name, **card, "check": check}
        # Again: something else may have come to the final name while the export ran.
        check_output(request)
        _install(staging, output)
    finally:
        _remove(staging)
    write_json_atomically(card_path(output), card)
    return card


def card_path(output: Path) -> Path:
    """The JSON description written beside an export: who wrote it for which file, the
    format, classes, input, the check."""
    return Path(f"{output}.json")


@contextlib.contextmanager
def _os_error_naming(output: Path):
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


def sample_images(model, split_file, count: int) -> np.ndarray:
    """`count` images of the split spread over the whole file, as the model eats them
    (centre-cropped to its input, as rank_accuracy.py's centre mode serves them)."""
    from pipeline.datasets.hdf5_format import read_split_info
    from pipeline.evaluation.rank_accuracy import serving_size
    from pipeline.io import HDF5DatasetGenerator
    from pipeline.models import check_model_matches_data

    info = read_split_info(split_file)
    size = serving_size(info, "center", model.input_shape[1], ())
    generator = HDF5DatasetGenerator(split_file, 1, shuffle=False, image_size=size)
    check_model_matches_data(model, info, "the checkpoint", generator.image_shape)
    count = min(count, info.num_samples)
    indices = np.linspace(0, info.num_samples - 1, count).round().astype(int)
    return generator.load_batch(indices, 0, 0)


def write_format(model, path: Path, request: ExportRequest) -> None:
    import keras

    shape = (request.batch_size, *model.input_shape[1:])
    signature = [keras.InputSpec(shape=shape, dtype="float32", name=INPUT_NAME)]
    if request.format == "saved_model":
        model.export(path, format="tf_saved_model", input_signature=signature, verbose=False)
    elif request.format == "tflite":
        options = {}
        if request.float16:
            import tensorflow as tf

            options = {
                "optimizations": [tf.lite.Optimize.DEFAULT],
                "target_spec": {"supported_types": [tf.float16]},
            }
        model.export(path, format="litert", input_signature=signature, verbose=False, **options)
    else:
        _write_onnx(model, path, signature)


def _write_onnx(model, path: Path, signature) -> None:
    """Through a SavedModel and tf2onnx's own command: Keras' direct ONNX export turns the
    normalisation's constants into extra model inputs (tf2onnx 1.17, Keras 3.15)."""
    saved = path.with_name(f"{path.name}.saved_model")
    try:
        model.export(saved, format="tf_saved_model", input_signature=signature, verbose=False)
        command = [
            sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved),
            "--output", str(path), "--opset", str(ONNX_OPSET),
            "--rename-inputs", INPUT_NAME, "--rename-outputs", OUTPUT_NAME,
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"tf2onnx could not convert the model: {last}")
    finally:
        _remove(saved)


def exported_runner(path: Path, format: str):
    """A function from a float32 batch to the exported model's probabilities."""
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # held: its functions need its variables
        return lambda images: np.asarray(loaded.serve(tf.constant(images)))
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    return _tflite_runner(path)


def _tflite_runner(path: Path):
    import tensorflow as tf

    # TensorFlow's interpreter warns that it moves to another package, and its delegate
    # announces itself on stderr: neither is for the user.
    with warnings.catch_warnings(), stderr_held():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]

    def run(images):
        if tuple(source["shape"]) != images.shape:
            interpreter.resize_tensor_input(source["index"], images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"]).copy()

    return run


def compare(model, run, images: np.ndarray, request: ExportRequest) -> dict:
    """Largest probability difference and top-1 agreement between the exported model and
    the checkpoint, over `images` (fed in batches of the export's size)."""
    batch = request.batch_size or min(64, len(images))
    expected, served = [], []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch].astype(np.float32)
        count = len(chunk)
        if request.batch_size and count < batch:  # a fixed batch: pad, then drop the padding
            chunk = np.concatenate([chunk, np.zeros((batch - count, *chunk.shape[1:]), "float32")])
        expected.append(np.asarray(model.predict_on_batch(chunk))[:count])
        served.append(np.asarray(run(chunk))[:count])
    expected, served = np.concatenate(expected), np.concatenate(served)
    return {
        "samples": int(len(images)),
        "max_difference": float(np.abs(expected - served).max()),
        "top1_agreement": float((expected.argmax(1) == served.argmax(1)).mean()),
        "tolerance": request.allowed_difference,
    }


def _install(staging: Path, output: Path) -> None:
    """Give the checked export its final name, replacing a previous export whole (only one
    check_output accepted). A failure half-way leaves the old export or the new one under
    the final name, never neither: the old one is moved aside, the new one renamed in, and
    only then is the old one deleted."""
    if staging.is_file() and (output.is_file() or not output.exists()):
        os.replace(staging, output)  # one step: the old file or the new one, always
        return
    previous = output.with_name(f".{output.name}.previous")
    _remove(previous)  # a crashed export's leftover
    if output.exists():
        output.rename(previous)
    try:
        staging.rename(output)
    except BaseException:
        if previous.exists() and not output.exists():
            previous.rename(output)  # the old export back under its name
        raise
    _remove(previous)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
