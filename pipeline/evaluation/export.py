"""Export a checkpoint for serving (SavedModel, ONNX, TFLite) and check the exported file.

The exported model is the whole network, normalisation included: it takes float32 RGB
pixels 0-255 of shape (batch, height, width, 3) and returns class probabilities. After
writing, the exported file runs on samples of the checkpoint's data set beside the
Keras model; above the tolerance nothing is kept. Files are written under a temporary
name and renamed only once checked, so a half-written export never has the final name.

The formats are pipeline/evaluation/export_formats.py; what --output may replace (the
description written beside each export, --overwrite) is export_output.py; installing
the files and naming a failed write is export_files.py.
"""

import importlib.util
import math
from collections.abc import Iterable

import numpy as np

from pipeline.errors import UserError
from pipeline.evaluation.export_files import install, os_error_naming, remove
from pipeline.evaluation.export_formats import (
    FORMATS,
    NEEDS,
    ExportRequest,
    exported_runner,
    write_format,
)
from pipeline.evaluation.export_output import WRITTEN_BY, card_path, check_output, check_writable
from pipeline.runs.json_files import write_json_atomically


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


def export_and_check(model, images: np.ndarray, request: ExportRequest, card: dict) -> dict:
    """Write `model` in the requested format, run it on `images` beside the Keras model,
    and keep it (with `card`, a JSON description beside it) only within the tolerance.
    Returns the card with the check's figures, and who wrote it for what file."""
    output = request.output
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.stem}.partial{output.suffix}")
    remove(staging)
    try:
        with os_error_naming(output):
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
        install(staging, output)
    finally:
        remove(staging)
    write_json_atomically(card_path(output), card)
    return card


def sample_images(model, split_file, count: int) -> np.ndarray:
    """`count` images of the split spread over the whole file, as the model eats them
    (centre-cropped to its input, as rank_accuracy.py's centre mode serves them)."""
    from pipeline.datasets.hdf5_reader import read_split_info
    from pipeline.evaluation.rank_accuracy import serving_size
    from pipeline.io import HDF5DatasetGenerator, LoaderOptions
    from pipeline.models import check_model_matches_data

    info = read_split_info(split_file)
    size = serving_size(info, "center", model.input_shape[1], ())
    generator = HDF5DatasetGenerator(
        split_file, LoaderOptions(batch_size=1, shuffle=False, image_size=size)
    )
    check_model_matches_data(model, info, "the checkpoint", generator.image_shape)
    count = min(count, info.num_samples)
    indices = np.linspace(0, info.num_samples - 1, count).round().astype(int)
    return generator.load_batch(indices, 0, 0)


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
