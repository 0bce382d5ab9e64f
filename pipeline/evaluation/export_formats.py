"""The formats an export can take (SavedModel, ONNX, TFLite) and the request that picks
one: what each needs installed, how it is written from a Keras model, and how the
written file is run again to check it.
"""

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from pipeline.errors import UserError
from pipeline.evaluation.export_files import remove
from pipeline.framework import stderr_held

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
        remove(saved)


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
