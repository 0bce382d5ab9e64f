"""export.py: every format round-trips the digits model within its tolerance; a file
that fails the check, or cannot be made, leaves nothing under the final name."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.export import TOLERANCES, ExportRequest, check_request

REPO = Path(__file__).resolve().parent.parent
TINY = 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'
HAVE_ONNX = all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnxruntime"))

# One process: train a tiny digits model, then export it every way (Keras starts once).
EXPORTS = """
import json, sys
import export, train

digits, run, out = sys.argv[1], sys.argv[2], sys.argv[3]
codes = {}
codes["train"] = train.main(["--checkpoints", run, "--epochs", "1", "--set", TINY,
                             "--set", f"data.dataset_dir={digits}"])
cases = {
    "saved_model": ["--format", "saved_model", "--output", f"{out}/served"],
    "tflite": ["--format", "tflite", "--output", f"{out}/model.tflite"],
    "tflite_float16": ["--format", "tflite", "--float16", "--output", f"{out}/half.tflite"],
}
if HAVE_ONNX:
    cases["onnx"] = ["--format", "onnx", "--output", f"{out}/model.onnx"]
    cases["onnx_fixed"] = ["--format", "onnx", "--batch-size", "8", "--samples", "20",
                           "--output", f"{out}/fixed.onnx"]
    cases["too_strict"] = ["--format", "onnx", "--tolerance", "1e-30",
                           "--output", f"{out}/strict.onnx"]
for name, arguments in cases.items():
    codes[name] = export.main(["--checkpoints", run, *arguments])
print("CODES " + json.dumps(codes))
""".replace("TINY", repr(TINY)).replace("HAVE_ONNX", repr(HAVE_ONNX))


def test_every_format_round_trips_the_digits_model_within_its_tolerance(tmp_path, digits_dir):
    run, out = tmp_path / "run", tmp_path / "exports"
    # As a user runs it: the pipeline's own quiet start, not the suite's log level.
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    completed = subprocess.run(
        [sys.executable, "-c", EXPORTS, str(digits_dir), str(run), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=environment,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(text for text in completed.stdout.splitlines() if text.startswith("CODES "))
    codes = json.loads(line.removeprefix("CODES "))
    expected = {"train": 0, "saved_model": 0, "tflite": 0, "tflite_float16": 0}
    if HAVE_ONNX:
        expected |= {"onnx": 0, "onnx_fixed": 0, "too_strict": 2}
    assert codes == expected, completed.stderr[-3000:]
    # Nothing but the exports' own output: no converter or interpreter chatter.
    errors = [text for text in completed.stderr.splitlines() if text.strip()]
    if HAVE_ONNX:
        assert len(errors) == 1, errors
        assert errors[0].startswith("error: the exported onnx model differs from the checkpoint")
    else:
        assert errors == []

    exported = {
        "served": ("saved_model", "float32"),
        "model.tflite": ("tflite", "float32"),
        "half.tflite": ("tflite", "float16"),
    }
    if HAVE_ONNX:
        exported |= {"model.onnx": ("onnx", "float32"), "fixed.onnx": ("onnx", "float32")}
    for name, (format, precision) in exported.items():
        assert (out / name).exists(), name
        card = json.loads((out / f"{name}.json").read_text())
        assert card["format"] == format and card["precision"] == precision
        assert card["class_names"] == [str(digit) for digit in range(10)]
        check = card["check"]
        assert check["max_difference"] <= TOLERANCES[precision], (name, check)
        assert check["tolerance"] == TOLERANCES[precision]
        assert check["top1_agreement"] >= (0.98 if precision == "float16" else 1.0)
    assert json.loads((out / "served.json").read_text())["check"]["samples"] == 256
    if HAVE_ONNX:
        fixed = json.loads((out / "fixed.onnx.json").read_text())
        assert fixed["input"]["shape"] == [8, 32, 32, 3] and fixed["check"]["samples"] == 20
        # Above the tolerance: no file under the final name, no staging file left.
        assert not (out / "strict.onnx").exists() and not (out / "strict.onnx.json").exists()
    assert [path.name for path in out.iterdir() if "partial" in path.name] == []


@pytest.mark.parametrize(
    ("request_options", "message"),
    [
        ({"format": "pickle"}, "--format must be one of saved_model, onnx, tflite"),
        ({"format": "onnx", "float16": True}, "--float16 is available for tflite only"),
        ({"format": "tflite", "output": "model.tfl"}, "must end in .tflite"),
        ({"format": "onnx", "batch_size": 0}, "--batch-size must be >= 1"),
        ({"format": "onnx", "samples": 0}, "--samples must be >= 1"),
    ],
)
def test_impossible_exports_are_refused_before_loading_anything(tmp_path, request_options, message):
    options = {"output": "model.tflite", **request_options}
    options["output"] = tmp_path / options["output"]
    with pytest.raises(UserError, match=message):
        check_request(ExportRequest(**options), "tensorflow")


def test_a_missing_converter_or_backend_is_one_line(tmp_path, monkeypatch):
    request = ExportRequest(format="onnx", output=tmp_path / "model.onnx")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "tf2onnx" else real_find_spec(name, *rest),
    )
    with pytest.raises(UserError, match=r"needs the tf2onnx package.*pip install '\.\[export\]'"):
        check_request(request, "tensorflow")
    with pytest.raises(UserError, match="tensorflow or jax backend, not KERAS_BACKEND=torch"):
        check_request(request, "torch")


def test_an_existing_export_is_kept_without_overwrite(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"an earlier export")
    request = ExportRequest(format="saved_model", output=tmp_path / "model.onnx")
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        check_request(request, "tensorflow")


def test_export_help_answers_without_a_framework():
    completed = subprocess.run(
        [sys.executable, str(REPO / "export.py"), "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "KERAS_BACKEND": "no_such_backend"},
    )  # fmt: skip
    assert completed.returncode == 0 and "--format" in completed.stdout


def test_a_nan_from_the_exported_model_fails_the_check(tmp_path, monkeypatch):
    import numpy as np

    from pipeline import export

    class Model:
        input_shape = (None, 2, 2, 3)

        def predict_on_batch(self, images):
            return np.full((len(images), 3), 1 / 3, "float32")

    def nan_runner(path, format):
        return lambda batch: np.full((len(batch), 3), np.nan)

    request = ExportRequest(format="onnx", output=tmp_path / "model.onnx", batch_size=4)
    images = np.zeros((6, 2, 2, 3), "float32")
    check = export.compare(Model(), nan_runner(None, "onnx"), images, request)
    assert np.isnan(check["max_difference"]) and check["samples"] == 6
    monkeypatch.setattr(export, "write_format", lambda model, path, request: path.write_bytes(b""))
    monkeypatch.setattr(export, "exported_runner", nan_runner)
    with pytest.raises(UserError, match="differs from the checkpoint by up to nan"):
        export.export_and_check(Model(), images, request, {})
    assert list(tmp_path.iterdir()) == []  # nothing under the final name, no staging file
