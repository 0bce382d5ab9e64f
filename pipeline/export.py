"""Export a checkpoint for serving (SavedModel, ONNX, TFLite) and check the exported file.

The exported model is the whole network, normalisation included: it takes float32 RGB
pixels 0-255 of shape (batch, height, width, 3) and returns class probabilities. After
writing, the exported file runs on samples of the checkpoint's data set beside the
Keras model; above the tolerance nothing is kept. Files are written under a temporary
name and renamed only once checked, so a half-written export never has the final name.
"""

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from pipeline.errors import UserError
from pipeline.framework import stderr_held
from pipeline.run_dir import write_json_atomically

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


def check_request(request: ExportRequest, backend: str) -> None:
    """Refuse what cannot be exported before any model is loaded (one line each)."""
    if request.format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {request.format!r}")
    if request.float16 and request.format != "tflite":
        raise UserError(f"--float16 is available for tflite only, not {request.format}")
    if request.batch_size is not None and request.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {request.batch_size}")
    if request.samples < 1:
        raise UserError(f"--samples must be >= 1 (the check runs them), got {request.samples}")
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
    if request.output.exists() and not request.overwrite:
        raise UserError(f"{request.output} exists; pass --overwrite to replace it")


def export_and_check(model, images: np.ndarray, request: ExportRequest, card: dict) -> dict:
    """Write `model` in the requested format, run it on `images` beside the Keras model,
    and keep it (with `card`, a JSON description beside it) only within the tolerance.
    Returns the card with the check's figures."""
    output = request.output
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.stem}.partial{output.suffix}")
    _remove(staging)
    try:
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
        card = {**card, "check": check}
        _install(staging, output)
    finally:
        _remove(staging)
    write_json_atomically(card_path(output), card)
    return card


def card_path(output: Path) -> Path:
    """The JSON description written beside an export: classes, input, the check."""
    return Path(f"{output}.json")


def sample_images(model, split_file, count: int) -> np.ndarray:
    """`count` images of the split spread over the whole file, as the model eats them
    (centre-cropped to its input, as rank_accuracy.py's centre mode serves them)."""
    from pipeline.datasets.hdf5_format import read_split_info
    from pipeline.evaluation import serving_size
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
    """Give the checked export its final name; a previous export there is replaced whole."""
    if not staging.is_dir():
        if output.is_dir():
            _remove(output)
        os.replace(staging, output)
        return
    previous = output.with_name(f".{output.name}.previous")
    _remove(previous)
    if output.exists():
        output.rename(previous)
    staging.rename(output)
    _remove(previous)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
