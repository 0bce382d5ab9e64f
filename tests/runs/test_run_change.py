"""Rewinds and --overwrite as transactions: a kill at every step leaves the old state or
the new one, and nothing of either branch is lost or overwritten."""

import datetime
import json
import os
import signal
import time
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.runs import run_change
from pipeline.runs.checkpoint_files import point_latest
from pipeline.runs.history import write_history
from pipeline.runs.rewind import apply_start
from pipeline.runs.run_reading import latest_checkpoint
from pipeline.runs.run_state import StartRequest, resolve_start

# What each kind of change asks for.
REQUESTS = {"rewind": StartRequest(start_epoch=2), "overwrite": StartRequest(overwrite=True)}
KILLED, FINISHED = 9, 0


def fake_checkpoint(run_dir: Path, name: str, epoch: int, batch: int = 0) -> Path:
    """A stand-in checkpoint whose bytes name it, with the state file training writes."""
    path = run_dir / name
    path.write_bytes(f"weights of {name}".encode())
    state = {"checkpoint": name, "epoch": epoch, "batch": batch, "config": {}}
    path.with_suffix(".json").write_text(json.dumps(state))
    return path


def six_epochs(run_dir: Path) -> Path:
    """Epochs 1-6 with checkpoints every 2, best after 5 and an interrupt in epoch 7."""
    run_dir.mkdir(parents=True)
    for epoch in (2, 4, 6):
        fake_checkpoint(run_dir, f"epoch_{epoch:04d}.keras", epoch)
    fake_checkpoint(run_dir, "best.keras", 5)
    point_latest(run_dir, fake_checkpoint(run_dir, "interrupt.keras", 6, 3))
    write_history(run_dir, {"epoch": list(range(1, 7)), "loss": [6.0 - e for e in range(6)]})
    (run_dir / "config.json").write_text(json.dumps({"training": {"learning_rate": 0.1}}))
    return run_dir


def contents(run_dir: Path) -> dict[str, bytes]:
    """Every checkpoint and its state anywhere under the run, by name: what must never be
    lost, wherever it moved (a name found twice must hold the same bytes)."""
    found = {}
    for path in sorted(run_dir.rglob("*")):
        stem = path.stem
        if path.is_file() and (stem.startswith("epoch_") or stem in ("best", "interrupt")):
            assert found.setdefault(path.name, path.read_bytes()) == path.read_bytes()
    return found


def killed_at(run_dir: Path, kill_at: int, request: str) -> bool:
    """Carry the change out in a forked process that dies (os._exit: no clean-up of any
    kind, as kill -9) just before step number `kill_at`; True when it ran to its end."""
    child = os.fork()
    if child == 0:  # the child: never returns into pytest
        code = KILLED
        try:
            taken = []

            def hook(number):
                if len(taken) == kill_at:
                    os._exit(KILLED)
                taken.append(number)

            run_change.step_hook = hook
            start = resolve_start(run_dir, REQUESTS[request])
            apply_start(run_dir, start, datetime.datetime(2026, 12, 7))
            code = FINISHED
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (waited := os.waitpid(child, os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:  # never hang the suite
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            raise AssertionError(f"the change killed before step {kill_at} never ended")
        time.sleep(0.01)
    status = waited[1]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) in (KILLED, FINISHED)
    return os.WEXITSTATUS(status) == FINISHED


def history_epochs(run_dir: Path) -> list[int]:
    path = run_dir / "history.json"
    return json.loads(path.read_text())["epoch"] if path.is_file() else []


def test_a_rewind_killed_at_any_step_is_old_or_new_and_loses_nothing(tmp_path):
    original = contents(six_epochs(tmp_path / "original"))
    for kill_at in range(40):
        run_dir = six_epochs(tmp_path / f"run_{kill_at}")
        finished = killed_at(run_dir, kill_at, "rewind")
        # The next start (a plain --resume) first finishes what the kill cut short.
        resumed = resolve_start(run_dir, StartRequest(resume=True))
        assert not (run_dir / run_change.PENDING).exists()
        keras_files = {path.name for path in run_dir.glob("*.keras")}
        if kill_at == 0:  # killed before the intent was written: the old state, whole
            assert resumed.checkpoint.name == "interrupt.keras"
            assert history_epochs(run_dir) == [1, 2, 3, 4, 5, 6]
        else:  # the new state: back at epoch 2, the later branch set aside
            assert resumed.checkpoint.name == "epoch_0002.keras" and resumed.position == (2, 0)
            # --resume writes epoch_0004 and later next: none of them is here to overwrite.
            assert keras_files == {"epoch_0002.keras"}
            assert history_epochs(run_dir) == [1, 2]  # matches the checkpoint resumed from
            (abandoned,) = (run_dir / "abandoned").iterdir()
            assert history_epochs(abandoned) == [1, 2, 3, 4, 5, 6]
            assert {path.name for path in abandoned.glob("*.keras")} == {
                "epoch_0004.keras", "epoch_0006.keras", "best.keras", "interrupt.keras"
            }  # fmt: skip
        assert contents(run_dir) == original  # every file of both branches, byte for byte
        if finished:
            break
    assert finished and kill_at > 10  # every step was cut once


def test_an_overwrite_killed_at_any_step_is_old_or_new(tmp_path):
    original = contents(six_epochs(tmp_path / "original"))
    for kill_at in range(60):
        run_dir = six_epochs(tmp_path / f"run_{kill_at}")
        (run_dir / "abandoned" / "old").mkdir(parents=True)
        finished = killed_at(run_dir, kill_at, "overwrite")
        latest = latest_checkpoint(run_dir)  # a reader: it finishes the change first
        names = {path.name for path in run_dir.iterdir()}
        if kill_at == 0:
            assert latest.name == "interrupt.keras" and contents(run_dir) == original
        else:
            assert latest is None and names == set(), names
        if finished:
            break
    assert finished and kill_at > 10


def test_preconditions_are_checked_before_the_first_move(tmp_path, monkeypatch):
    run_dir = six_epochs(tmp_path / "run")
    (run_dir / "abandoned").write_text("a file where the folder goes")
    before = contents(run_dir)
    with pytest.raises(UserError, match="abandoned is not a folder"):
        apply_start(run_dir, resolve_start(run_dir, StartRequest(start_epoch=2)))
    assert contents(run_dir) == before and not (run_dir / run_change.PENDING).exists()
    (run_dir / "abandoned").unlink()

    class Full:
        free = 1000

    monkeypatch.setattr(run_change.shutil, "disk_usage", lambda path: Full)
    with pytest.raises(UserError, match="no space left for the rewind .* nothing was changed"):
        apply_start(run_dir, resolve_start(run_dir, StartRequest(start_epoch=2)))
    assert contents(run_dir) == before and latest_checkpoint(run_dir).name == "interrupt.keras"


@pytest.mark.parametrize(
    "intent",
    [
        '{"kind": "rewind", "copies": [], "moves": [["epoch_0004.keras", "../stolen"]], '
        '"latest": null, "history_from": null, "history_epochs": 0, "deletions": []}',
        '{"kind": "clear", "copies": [], "moves": [], "latest": null, "history_from": null, '
        '"history_epochs": 0, "deletions": ["/"]}',
        '{"kind": "rewind", "copies": 5}',
        "[" * 100_000 + "]" * 100_000,
        "not json",
    ],
)
def test_a_forged_intent_is_one_line_and_touches_nothing(tmp_path, intent):
    run_dir = six_epochs(tmp_path / "run")
    (run_dir / run_change.PENDING).write_text(intent)
    before = contents(run_dir)
    with pytest.raises(UserError, match=f"{run_change.PENDING} is damaged"):
        resolve_start(run_dir, StartRequest(resume=True))
    assert contents(run_dir) == before and (tmp_path / "run").is_dir()


def test_a_forged_intent_cannot_reach_outside_through_a_link(tmp_path):
    # A downloaded run whose abandoned/ links to a folder of the user's.
    precious = tmp_path / "home" / "Documents"
    precious.mkdir(parents=True)
    (precious / "thesis.tex").write_text("years of work")
    run_dir = six_epochs(tmp_path / "run")
    (run_dir / "abandoned").symlink_to(tmp_path / "home")
    for intent in (
        {"kind": "clear", "copies": [], "moves": [], "latest": None, "history_from": None,
         "history_epochs": 0, "deletions": ["abandoned/Documents"]},
        {"kind": "rewind", "copies": [], "history_from": None, "history_epochs": 0,
         "moves": [["abandoned/Documents/thesis.tex", "stolen.tex"]], "latest": None,
         "deletions": []},
    ):  # fmt: skip
        (run_dir / run_change.PENDING).write_text(json.dumps(intent))
        with pytest.raises(UserError, match=f"{run_change.PENDING} is damaged"):
            latest_checkpoint(run_dir)
        assert (precious / "thesis.tex").read_text() == "years of work"


def test_a_reader_leaves_a_change_to_the_training_run_that_holds_the_lock(tmp_path):
    import fcntl

    run_dir = six_epochs(tmp_path / "run")
    change, _folder = run_state_plan(run_dir)
    (run_dir / run_change.PENDING).write_text(json.dumps(change.to_dict()))
    with open(run_dir / "train.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The trainer holds the lock: the reader reads the run as it is.
        assert latest_checkpoint(run_dir).name == "interrupt.keras"
        assert (run_dir / run_change.PENDING).exists()
    # Free again: the next reader finishes it.
    assert latest_checkpoint(run_dir).name == "epoch_0002.keras"
    assert not (run_dir / run_change.PENDING).exists()


def run_state_plan(run_dir):
    import datetime

    from pipeline.runs.rewind import plan_rewind

    start = resolve_start(run_dir, StartRequest(start_epoch=2))
    return plan_rewind(run_dir, start, datetime.datetime(2026, 12, 7))
