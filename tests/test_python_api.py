"""The Python API: the README's example run for real (with a ctrl+c and a resume), and
refusals that answer before the framework loads."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 3


def readme_example() -> str:
    """The README's Python block, with fewer epochs (the code is otherwise the same)."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert '"training.epochs=12"' in code
    return code.replace('"training.epochs=12"', f'"training.epochs={EPOCHS}"')


def _environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_the_readme_example_numbers_each_epoch_once_across_ctrl_c_and_resume(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    (tmp_path / "config").symlink_to(REPO / "config")
    epochs_csv = tmp_path / "output" / "python_run_epochs.csv"
    first = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not _rows(epochs_csv) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)  # ctrl+c, once the first epoch is recorded
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    assert "interrupted: " in output, output
    rows_before = len(_rows(epochs_csv))
    assert 1 <= rows_before < EPOCHS, output

    second = subprocess.run(
        [sys.executable, str(script), "--resume"],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    rows = _rows(epochs_csv)
    assert [int(row[0]) for row in rows] == list(range(1, EPOCHS + 1))
    assert all(0 <= float(row[2]) <= 1 for row in rows)
    assert "finished: " in second.stdout
    assert re.search(r"test rank-1 \d+\.\d\d%, rank-5 \d+\.\d\d%", second.stdout)
    run_dir = tmp_path / "output" / "python_run"
    log = (run_dir / "train.log").read_text()
    assert "resuming from" in log
    # "auto" was resolved once, recorded, and the resume trained in the same precision.
    info = json.loads((run_dir / "run_info.json").read_text())
    chosen = json.loads((run_dir / "config.json").read_text())["training"]["precision"]
    assert chosen in ("float32", "mixed_bfloat16") and info["precision"]["chosen"] == chosen
    assert log.count(f"precision: {chosen} (") == 2


def _refusal_without_keras(tmp_path, argv) -> subprocess.CompletedProcess:
    """Run train.py with `argv` in a process that reports whether a framework loaded."""
    probe = (
        "import sys, runpy, atexit\n"
        "atexit.register(lambda: print('frameworks loaded:', sorted("
        "{'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules)), file=sys.stderr))\n"
        f"sys.argv = ['train.py', *{argv!r}]\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _used_run_dir(tmp_path) -> Path:
    run_dir = tmp_path / "used"
    run_dir.mkdir()
    (run_dir / "history.json").write_text('{"epoch": [1], "loss": [1.0]}')
    (run_dir / "epoch_0001.keras").write_bytes(b"")
    return run_dir


@pytest.mark.parametrize(
    "case",
    ["used directory", "nothing to resume", "rewind to an epoch with no checkpoint", "bad --lr"],
)
def test_a_refusal_about_the_run_directory_loads_no_framework(tmp_path, case):
    used = _used_run_dir(tmp_path)
    argv = {
        "used directory": ["--checkpoints", str(used)],
        "nothing to resume": ["--checkpoints", str(tmp_path / "empty"), "--resume"],
        "rewind to an epoch with no checkpoint": ["--checkpoints", str(used), "--start_epoch", "7"],
        "bad --lr": ["--checkpoints", str(tmp_path / "new"), "--lr", "-1"],
    }[case]
    result = _refusal_without_keras(tmp_path, argv)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1, result.stderr
    assert "frameworks loaded: []" in result.stderr, result.stderr


def test_a_loaded_config_trains_in_the_directory_its_overrides_name(tmp_path):
    """pipeline.train(config, overrides=["checkpoints=..."]) goes to that directory, as
    --set checkpoints=... does (refused here, before any framework loads: it is used)."""
    import pipeline
    from pipeline.errors import UserError

    used = _used_run_dir(tmp_path)
    config = pipeline.load_config(None)
    with pytest.raises(UserError, match=re.escape(f"{used} already holds a run")) as refused:
        pipeline.train(config, overrides=[f"checkpoints={used}"])
    assert f"--checkpoints {used} " in str(refused.value) and "--resume" in str(refused.value)
