"""Every file a run writes and reads back is untrusted: each forgery of a run file, fed to
the command that reads it, is one line naming the file, exit 2, and the run directory is
left byte for byte as it was."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'
DEEP = "[" * 100_000 + "]" * 100_000

# (name, file forged, how, command reading it). How: ("set", dotted key, value) sets one
# field of a JSON file; ("text", content) replaces the whole file.
CASES = [
    ("state config text", "epoch_0002.json", ("set", "config", "a string"), "rank"),
    ("state config list", "epoch_0002.json", ("set", "config", [1, 2]), "export"),
    ("state data text", "epoch_0002.json", ("set", "config.data", "x"), "predict"),
    ("state dataset_dir int", "epoch_0002.json", ("set", "config.data.dataset_dir", 5), "rank"),
    ("state dataset_dir list", "epoch_0002.json", ("set", "config.data.dataset_dir", [1]),
     "export"),
    ("state class_names int", "epoch_0002.json", ("set", "class_names", 5), "predict"),
    ("state class_names ints", "epoch_0002.json", ("set", "class_names", [1, 2]), "rank"),
    ("state epoch text", "epoch_0002.json", ("set", "epoch", "x"), "resume"),
    ("state batch negative", "epoch_0002.json", ("set", "batch", -1), "resume"),
    ("state nested deep", "epoch_0002.json", ("text", DEEP), "rank"),
    ("state a list", "epoch_0002.json", ("text", "[]"), "resume"),
    ("state not UTF-8", "epoch_0002.json", ("text", b"\xff\xfe{}"), "export"),
    ("state training text", "epoch_0002.json", ("set", "config.training", "x"), "resume"),
    ("state batch_size text", "epoch_0002.json", ("set", "config.training.batch_size", "8"),
     "resume"),
    ("interrupt metric_states text", "interrupt.json", ("set", "metric_states", "x"), "resume"),
    ("interrupt metric_states words", "interrupt.json", ("set", "metric_states", [["a"]]),
     "resume"),
    ("interrupt workers text", "interrupt.json", ("set", "workers", "abc"), "resume"),
    ("interrupt epoch_seconds text", "interrupt.json", ("set", "epoch_seconds", "abc"), "resume"),
    ("interrupt batch a million", "interrupt.json", ("set", "batch", 1_000_000), "resume"),
    ("interrupt epoch_rate negative", "interrupt.json", ("set", "epoch_rate", -1), "resume"),
    ("interrupt plateau text", "interrupt.json", ("set", "plateau", "x"), "resume"),
    ("latest nested deep", "latest.json", ("text", "[" * 10_000 + "]" * 10_000), "resume"),
    ("latest a list", "latest.json", ("text", "[]"), "rank"),
    ("latest outside the run", "latest.json", ("set", "checkpoint", "../x.keras"), "export"),
    ("latest oversized", "latest.json", ("text", " " * 100_000 + "{}"), "resume"),
    ("config a list", "config.json", ("text", "[]"), "resume"),
    ("config nested deep", "config.json", ("text", DEEP), "compare"),
    ("config training text", "config.json", ("set", "training", "x"), "resume"),
    ("config oversized", "config.json", ("text", " " * (5 * 1024**2) + "{}"), "compare"),
    ("history seconds 1e308", "history.json", ("set", "seconds", [1.0, 1e308]), "compare"),
    ("history epochs backwards", "history.json", ("set", "epoch", [2, 1]), "compare"),
    ("history epochs negative", "history.json", ("set", "epoch", [-1, 0]), "compare"),
    ("history epoch 10**400", "history.json", ("set", "epoch", [1, 10**400]), "compare"),
    ("history loss text", "history.json", ("set", "loss", "x"), "resume"),
    ("history nested deep", "history.json", ("text", DEEP), "compare"),
    ("run_info a list", "run_info.json", ("text", "[]"), "compare"),
    ("run_info data text", "run_info.json", ("set", "data", "x"), "compare"),
    ("run_info num_samples text", "run_info.json",
     ("set", "data", {"train.h5": {"num_samples": "x"}}), "compare"),
    ("run_info fingerprint int", "run_info.json",
     ("set", "data", {"train.h5": {"num_samples": 3, "sha256_labels_and_edges": 5}}), "compare"),
    ("pending change leaving the run", "change.pending.json",
     ("text", '{"kind": "rewind", "copies": [], "moves": [["epoch_0002.keras", "../x"]], '
      '"latest": null, "history_from": null, "history_epochs": 0, "deletions": []}'),
     "resume"),
]  # fmt: skip

SCRIPT = """
import contextlib, io, json, shutil, sys
from pathlib import Path
import compare_runs, export, predict, rank_accuracy, train

root, digits = Path(sys.argv[1]), sys.argv[2]
cases = json.loads(Path(sys.argv[3]).read_text())
pristine = root / "pristine"
code = train.main(["--checkpoints", str(pristine), "--epochs", "2", "--set", TINY,
                   "--set", f"data.dataset_dir={digits}", "--set", "training.batch_size=256",
                   "--set", "training.schedule=constant", "--set", "training.checkpoint_every=1"])
assert code == 0
# An interrupt after batch 2 of epoch 2, as training saves one, and latest.json naming it.
shutil.copy(pristine / "epoch_0001.keras", pristine / "interrupt.keras")
state = json.loads((pristine / "epoch_0001.json").read_text())
state.update(checkpoint="interrupt.keras", batch=2, metric_states=[[1.0, 2.0]], workers=1,
             epoch_seconds=1.5, epoch_rate=0.05, plateau={})
(pristine / "interrupt.json").write_text(json.dumps(state))


def forge(path, how):
    if how[0] == "text":
        content = how[1]
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return
    values = json.loads(path.read_text())
    *parents, leaf = how[1].split(".")
    table = values
    for key in parents:
        table = table[key]
    table[leaf] = how[2]
    path.write_text(json.dumps(values))


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


for name, file, how, command in cases:
    run = root / name.replace(" ", "_")
    shutil.copytree(pristine, run)
    if file == "interrupt.json":
        (run / "latest.json").write_text(json.dumps({"checkpoint": "interrupt.keras"}))
    if file == "change.pending.json":
        (run / file).write_text("{}")
    if how[0] == "text" and isinstance(how[1], str) and how[1].startswith("b:"):
        how = ("text", bytes.fromhex(how[1][2:]))
    forge(run / file, how)
    before = snapshot(run)
    argv = {
        "resume": (train.main, ["--checkpoints", str(run), "--resume", "--epochs", "4"]),
        "rank": (rank_accuracy.main, ["--checkpoints", str(run)]),
        "export": (export.main, ["--checkpoints", str(run), "--format", "saved_model",
                                 "--output", str(root / "exports" / name.replace(" ", "_"))]),
        "predict": (predict.main, [sys.argv[4], "--model", str(run / "epoch_0002.keras")]),
        "compare": (compare_runs.main, [str(run), "--output", str(root / "comparison")]),
    }[command]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = argv[0](argv[1])
    print("CASE " + json.dumps({"name": name, "code": code, "stderr": err.getvalue(),
                                "unchanged": snapshot(run) == before}), flush=True)
""".replace("TINY", repr(TINY))


def test_every_forged_run_file_is_one_line_naming_it_and_changes_nothing(tmp_path, digits_dir):
    import cv2
    import numpy as np

    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    cases = tmp_path / "cases.json"
    encoded = [
        (name, file, ("text", "b:" + how[1].hex()) if isinstance(how[1], bytes) else how, command)
        for name, file, how, command in CASES
    ]
    cases.write_text(json.dumps(encoded))
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "runs"), str(digits_dir), str(cases),
         str(image)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg",
             "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = [
        json.loads(line.removeprefix("CASE "))
        for line in completed.stdout.splitlines()
        if line.startswith("CASE ")
    ]
    assert len(results) == len(CASES) >= 30
    for (name, file, _how, _command), result in zip(CASES, results, strict=True):
        lines = result["stderr"].strip().splitlines()
        assert result["code"] == 2, (name, lines)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, lines)
        assert file in lines[0], (name, lines[0])  # the file named
        assert result["unchanged"], name  # the run directory byte for byte as it was


# compare_runs.py in a process of its own, which prints its own peak memory (KiB).
MEASURED = """
import sys
import compare_runs
code = compare_runs.main([sys.argv[1], "--output", sys.argv[2]])
# VmHWM: this process's own peak (ru_maxrss keeps the parent's across fork and exec).
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("peak", int(peak[0].split()[1]))
sys.exit(code)
"""


def test_a_history_of_a_million_epochs_is_refused_unread_by_its_size_cap(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    epochs = list(range(1, 1_000_001))
    column = [0.123456789012345] * len(epochs)
    history = {"epoch": epochs, "loss": column, "accuracy": column, "val_loss": column,
               "val_accuracy": column, "learning_rate": column, "seconds": column}  # fmt: skip
    (run / "history.json").write_text(json.dumps(history))
    (run / "config.json").write_text("{}")
    completed = subprocess.run(
        [sys.executable, "-c", MEASURED, str(run), str(tmp_path / "c")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "history.json is over 67108864 bytes" in lines[0], lines
    # Refused unread: the process stays far below the file's size.
    assert int(completed.stdout.split("peak ")[1]) * 1024 < 512 * 1024**2
