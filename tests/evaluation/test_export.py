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
from pipeline.evaluation.export import check_request
from pipeline.evaluation.export_formats import TOLERANCES, ExportRequest

REPO = Path(__file__).resolve().parents[2]
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
    "saved_model_again": ["--format", "saved_model", "--output", f"{out}/served", "--overwrite"],
    "onto_the_run": ["--format", "saved_model", "--output", run, "--overwrite"],
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
    expected = {"train": 0, "saved_model": 0, "saved_model_again": 0, "onto_the_run": 2}
    expected |= {"tflite": 0, "tflite_float16": 0}
    if HAVE_ONNX:
        expected |= {"onnx": 0, "onnx_fixed": 0, "too_strict": 2}
    assert codes == expected, completed.stderr[-3000:]
    # Nothing but the exports' own output: no converter or interpreter chatter.
    errors = [text for text in completed.stderr.splitlines() if text.strip()]
    assert len(errors) == (2 if HAVE_ONNX else 1), errors
    assert errors[0].startswith(f"error: --output {run} is a run directory"), errors
    if HAVE_ONNX:
        assert errors[1].startswith("error: the exported onnx model differs from the checkpoint")

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
        assert card["written_by"] == "export.py" and card["file"] == name
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
    assert [path.name for path in out.iterdir() if path.name.startswith(".")] == []
    assert (run / "latest.json").is_file()  # the run --overwrite was refused is whole


@pytest.mark.parametrize(
    ("request_options", "message"),
    [
        ({"format": "pickle"}, "--format must be one of saved_model, onnx, tflite"),
        ({"format": "onnx", "float16": True}, "--float16 is available for tflite only"),
        ({"format": "tflite", "output": "model.tfl"}, "must end in .tflite"),
        ({"format": "onnx", "batch_size": 0}, "--batch-size must be >= 1"),
        ({"format": "onnx", "samples": 0}, "--samples must be >= 1"),
        ({"format": "onnx", "tolerance": float("nan")}, "--tolerance must be a finite number"),
        ({"format": "onnx", "tolerance": -1e-4}, "--tolerance must be a finite number >= 0"),
        ({"format": "onnx", "tolerance": float("inf")}, "--tolerance must be a finite number"),
        ({"format": "onnx", "output": "a.txt/model.onnx"}, "a.txt is not a folder"),
    ],
)
def test_impossible_exports_are_refused_before_loading_anything(tmp_path, request_options, message):
    options = {"output": "model.tflite", **request_options}
    options["output"] = tmp_path / options["output"]
    (tmp_path / "a.txt").write_text("a file, where a folder should be")
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


def test_an_existing_export_is_kept_without_overwrite(tmp_path, fake_export):
    fake_export(ExportRequest(format="onnx", output=tmp_path / "model.onnx"), b"an export")
    before = listing(tmp_path)
    request = ExportRequest(format="saved_model", output=tmp_path / "model.onnx")
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        check_request(request, "tensorflow")
    # A file that is no export is not worth an --overwrite: no such advice.
    (tmp_path / "notes.onnx").write_bytes(b"not an export")
    request = ExportRequest(format="onnx", output=tmp_path / "notes.onnx")
    with pytest.raises(UserError, match="not an export written by export.py.*another --output"):
        check_request(request, "tensorflow")
    assert listing(tmp_path) == before | {"notes.onnx": listing(tmp_path)["notes.onnx"]}


def test_export_help_answers_without_a_framework():
    completed = subprocess.run(
        [sys.executable, str(REPO / "export.py"), "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "KERAS_BACKEND": "no_such_backend"},
    )  # fmt: skip
    assert completed.returncode == 0 and "--format" in completed.stdout


def test_a_nan_from_the_exported_model_fails_the_check(tmp_path, monkeypatch):
    import numpy as np

    from pipeline.evaluation import export

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


def listing(folder: Path) -> dict:
    """Every path under `folder` (links not followed) with its mode, mtime and content:
    equal before and after means the folder was left byte for byte as it was."""
    entries = {}
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(root, name)
            status = path.lstat()
            if path.is_symlink():
                content = os.readlink(path)
            else:
                content = path.read_bytes() if path.is_file() else None
            entries[str(path.relative_to(folder))] = (status.st_mode, status.st_mtime_ns, content)
    return entries


class ConstantModel:
    """Stands for a Keras model: three equal probabilities for every image."""

    input_shape = (None, 2, 2, 3)

    def predict_on_batch(self, images):
        import numpy as np

        return np.full((len(images), 3), 1 / 3, "float32")


@pytest.fixture
def fake_export(monkeypatch):
    """export_and_check with no framework: it writes `content` (a file, or a SavedModel-
    shaped folder), checks it against ConstantModel, and installs it with its card."""
    import numpy as np

    from pipeline.evaluation import export

    def write(content):
        def write_format(model, path, request):
            if request.format != "saved_model":
                path.write_bytes(content)
                return
            (path / "variables").mkdir(parents=True)
            (path / "saved_model.pb").write_bytes(content)

        return write_format

    monkeypatch.setattr(
        export, "exported_runner", lambda path, format: ConstantModel().predict_on_batch
    )

    def run(request: ExportRequest, content: bytes, card=None) -> dict:
        monkeypatch.setattr(export, "write_format", write(content))
        card = card or {"format": request.format, "input": {"name": "image"}}
        images = np.zeros((2, 2, 2, 3), "float32")
        return export.export_and_check(ConstantModel(), images, request, card)

    return run


def refused_in_one_line(request: ExportRequest, folder: Path, match: str, sources=()) -> None:
    """check_request refuses `request` in one line and leaves `folder` as it was."""
    before = listing(folder)
    with pytest.raises(UserError, match=match) as refusal:
        check_request(request, "tensorflow", sources)
    assert "\n" not in str(refusal.value)
    assert "not an export written by export.py" in str(refusal.value)
    assert listing(folder) == before


def write_run_directory(run: Path) -> None:
    run.mkdir()
    for name in ("epoch_0001.keras", "latest.json", "history.json", "train.log", "config.json"):
        (run / name).write_text(f"the run's {name}")
    # Even a card that vouches for it, as export.py would write it, does not make it one.
    card = {"written_by": "export.py", "format": "saved_model", "file": run.name}
    (run.parent / f"{run.name}.json").write_text(json.dumps(card))


def test_overwrite_never_replaces_a_run_directory(tmp_path):
    write_run_directory(tmp_path / "run")
    request = ExportRequest(format="saved_model", output=tmp_path / "run", overwrite=True)
    refused_in_one_line(request, tmp_path, "is a run directory")
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "checkpoints").mkdir()
    request = ExportRequest(format="saved_model", output=tmp_path / "output", overwrite=True)
    refused_in_one_line(request, tmp_path, "is a run directory")


@pytest.mark.parametrize("output", [".", "..", "work/.."])
def test_overwrite_never_replaces_the_current_folder_or_one_above(tmp_path, monkeypatch, output):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("the user's own files")
    (work / "served").mkdir()
    monkeypatch.chdir(work if output.startswith(".") else tmp_path)
    request = ExportRequest(format="saved_model", output=Path(output), overwrite=True)
    refused_in_one_line(request, tmp_path, "is the current folder or one above it")


def test_overwrite_never_replaces_the_repository_or_what_the_export_reads(
    tmp_path, monkeypatch, fake_export
):
    monkeypatch.chdir(tmp_path)
    request = ExportRequest(format="saved_model", output=REPO, overwrite=True)
    with pytest.raises(UserError, match="is the repository or a folder above it"):
        check_request(request, "tensorflow")
    # A previous export, card and all, holding the checkpoint the export reads.
    served = ExportRequest(format="saved_model", output=tmp_path / "served", overwrite=True)
    fake_export(served, b"an earlier export")
    (tmp_path / "served" / "variables" / "model.keras").write_bytes(b"a checkpoint")
    checkpoint = tmp_path / "served" / "variables" / "model.keras"
    match = "is or holds .*model.keras, which export reads"
    refused_in_one_line(served, tmp_path, match, [checkpoint])


def test_overwrite_never_replaces_a_folder_or_file_that_is_no_export(tmp_path, fake_export):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"a photo")
    request = ExportRequest(format="saved_model", output=photos, overwrite=True)
    refused_in_one_line(request, tmp_path, r"has no description \(.*photos.json is missing\)")
    # A previous export whose folder has since gained other files.
    served = ExportRequest(format="saved_model", output=tmp_path / "served", overwrite=True)
    fake_export(served, b"an earlier export")
    (tmp_path / "served" / "notes.txt").write_text("added by hand")
    refused_in_one_line(served, tmp_path, r"is a folder with other content \(notes.txt\)")
    # A file with no card; a file where the card says a SavedModel folder.
    (tmp_path / "model.onnx").write_bytes(b"someone's model")
    request = ExportRequest(format="onnx", output=tmp_path / "model.onnx", overwrite=True)
    refused_in_one_line(request, tmp_path, "has no description")
    (tmp_path / "model.onnx.json").write_text(card_text(tmp_path))
    refused_in_one_line(request, tmp_path, "has a description .* describes another file")
    card = card_text(tmp_path).replace('"served"', '"model.onnx"')
    (tmp_path / "model.onnx.json").write_text(card)
    refused_in_one_line(request, tmp_path, "is not the SavedModel folder its card describes")
    # No file, but a file of the run's where its card would go (--output run/latest).
    write_run_directory(tmp_path / "run")
    request = ExportRequest(format="onnx", output=tmp_path / "run" / "latest", overwrite=True)
    refused_in_one_line(request, tmp_path, "latest.json that is not JSON")


def card_text(folder: Path) -> str:
    return (folder / "served.json").read_text()


def test_overwrite_never_follows_a_link(tmp_path, fake_export):
    served = ExportRequest(format="saved_model", output=tmp_path / "served", overwrite=True)
    fake_export(served, b"an earlier export")
    (tmp_path / "link").symlink_to(tmp_path / "served")
    (tmp_path / "link.json").write_text(card_text(tmp_path).replace('"served"', '"link"'))
    request = ExportRequest(format="saved_model", output=tmp_path / "link", overwrite=True)
    refused_in_one_line(request, tmp_path, "is a symbolic link")
    # Nor a card that is a link to a real export's card.
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "saved_model.pb").write_bytes(b"a copy")
    (tmp_path / "copy.json").symlink_to(tmp_path / "served.json")
    request = ExportRequest(format="saved_model", output=tmp_path / "copy", overwrite=True)
    refused_in_one_line(request, tmp_path, r"copy.json is a link")


DAMAGED_CARDS = {
    "not JSON": b'{"written_by": "export.py", "format": ',
    "not UTF-8": b'{"format": "\xff\xfe"}',
    "a list": b'["written_by", "export.py"]',
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "huge": b'{"written_by": "export.py", "padding": "' + b" " * (1 << 20) + b'"}',
    "a format of the wrong type": json.dumps(
        {"written_by": "export.py", "format": ["saved_model"], "file": "served"}
    ).encode(),
    "another writer": json.dumps(
        {"written_by": "train.py", "format": "saved_model", "file": "served"}
    ).encode(),
    "a card without marker or model": json.dumps(
        {"format": "saved_model", "input": "image", "output": 3}
    ).encode(),
}


@pytest.mark.parametrize("damage", DAMAGED_CARDS, ids=list(DAMAGED_CARDS))
def test_a_forged_or_damaged_card_is_no_export(tmp_path, fake_export, damage):
    served = ExportRequest(format="saved_model", output=tmp_path / "served", overwrite=True)
    fake_export(served, b"an earlier export")
    (tmp_path / "served.json").write_bytes(DAMAGED_CARDS[damage])
    refused_in_one_line(served, tmp_path, "has a description .*served.json that ")
    (tmp_path / "served.json").unlink()
    (tmp_path / "served.json").mkdir()
    refused_in_one_line(served, tmp_path, r"served.json is not a file")


def test_a_previous_export_is_replaced_whole(tmp_path, fake_export):
    served = ExportRequest(format="saved_model", output=tmp_path / "served", overwrite=True)
    first = fake_export(served, b"the first export")
    assert first["written_by"] == "export.py" and first["file"] == "served"
    check_request(served, "tensorflow")  # accepted: its own card vouches for it
    second = fake_export(served, b"the second export")
    assert (tmp_path / "served" / "saved_model.pb").read_bytes() == b"the second export"
    assert json.loads(card_text(tmp_path)) == second
    assert sorted(path.name for path in tmp_path.iterdir()) == ["served", "served.json"]
    # A file export, and a card written before export.py signed its cards.
    model = ExportRequest(format="onnx", output=tmp_path / "model.onnx", overwrite=True)
    fake_export(model, b"an onnx file")
    old = {"format": "onnx", "input": {"name": "image"}, "output": {"name": "probabilities"}}
    (tmp_path / "model.onnx.json").write_text(json.dumps(old))
    check_request(model, "tensorflow")
    fake_export(model, b"a newer onnx file")
    assert (tmp_path / "model.onnx").read_bytes() == b"a newer onnx file"


def test_a_failure_half_way_keeps_the_previous_export(tmp_path, fake_export, monkeypatch):
    served = ExportRequest(format="saved_model", output=tmp_path / "served", overwrite=True)
    fake_export(served, b"the first export")
    before = listing(tmp_path)
    real_rename = Path.rename

    def rename(self, target):
        if self.name.endswith(".partial"):
            raise OSError(28, "No space left on device", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="No space left"):
        fake_export(served, b"the second export")
    assert listing(tmp_path) == before  # the old export back, nothing staged left


def test_a_storage_error_inside_tensorflow_is_one_line_naming_the_export(tmp_path):
    from pipeline.errors import describe_os_error
    from pipeline.evaluation import export_files

    output = tmp_path / "served"
    OpError = type("ResourceExhaustedError", (Exception,), {})
    OpError.__module__ = "tensorflow.python.framework.errors_impl"
    failure = OpError(
        "{{function_node __wrapped__SaveV2}} /x/variables/part-0.tempstate; "
        "No space left on device [Op:SaveV2]\nmore lines"
    )
    failure.error_code = 8
    with pytest.raises(OSError) as raised, export_files.os_error_naming(output):
        raise failure
    assert describe_os_error(raised.value) == f"No space left on device: {output}"
    with pytest.raises(OSError) as raised, export_files.os_error_naming(output):
        try:
            raise OSError(30, "Read-only file system")
        except OSError as cause:
            raise RuntimeError("could not save") from cause
    assert describe_os_error(raised.value) == f"Read-only file system: {output}"
    with pytest.raises(ValueError), export_files.os_error_naming(output):
        raise ValueError("a bug: its traceback stays")


def test_a_folder_that_cannot_be_written_is_refused_first(tmp_path, monkeypatch):
    from pipeline.evaluation import export_output

    monkeypatch.setattr(export_output.os, "access", lambda path, mode: False)  # read-only, as root
    request = ExportRequest(format="onnx", output=tmp_path / "out" / "model.onnx")
    with pytest.raises(UserError, match=f"{tmp_path} is not writable"):
        check_request(request, "tensorflow")


def test_the_guarded_repository_is_the_checkout_itself():
    """--output may not replace the project's checkout or a folder above it: the path
    guarded must be the repository root, wherever the module sits in the tree."""
    from pipeline.evaluation.export_output import REPOSITORY

    assert REPOSITORY == REPO
    assert (REPOSITORY / "pyproject.toml").is_file()
