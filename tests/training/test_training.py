"""Training that survives ctrl+c: interrupt mid-epoch, resume, and end where an
uninterrupted run ends; the run directory's lock, state and records."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'

# Runs in a fresh process: deterministic kernels and the SIGINT handler are process-wide.
EXACT_RESUME = """
import os, signal, sys
import keras, numpy as np
from pipeline.config import load_config
from pipeline.models import load_model
from pipeline.training.start import train

digits, scratch = sys.argv[1], sys.argv[2]
config = load_config(None, [
    f"data.dataset_dir={digits}", "training.epochs=3", "training.batch_size=128",
    "training.checkpoint_every=1", "training.deterministic=true", "training.schedule=cosine",
    "training.warmup_epochs=1", 'data.augment=[{name = "pad_crop", pad = 2}]', TINY,
])

class CtrlC(keras.callbacks.Callback):
    # Presses ctrl+c while batch 4 of epoch 1 (the second epoch) trains.
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == 1 and batch == 4:
            os.kill(os.getpid(), signal.SIGINT)

straight = train(config, run_dir=f"{scratch}/straight")
stopped = train(config, run_dir=f"{scratch}/stopped", callbacks=[CtrlC()])
assert stopped.interrupted is not None, "no interrupt"
print("interrupted at", stopped.interrupted.epoch, stopped.interrupted.batch)
resumed = train(config, run_dir=f"{scratch}/stopped", resume=True)
a = a_straight = load_model(straight.final_checkpoint).get_weights()
b = load_model(resumed.final_checkpoint).get_weights()
print("max difference", max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)))
print("histories", straight.history["loss"], resumed.history["loss"])

class CtrlCAtEpochEnd(keras.callbacks.Callback):
    # Presses ctrl+c while the last batch of the first epoch trains: saved at (1, 0).
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == 0 and batch == 9:
            os.kill(os.getpid(), signal.SIGINT)

# --lr at an epoch boundary, against a run given the same rates in its config.
stopped = train(config, run_dir=f"{scratch}/boundary", callbacks=[CtrlCAtEpochEnd()])
print("boundary at", stopped.interrupted.epoch, stopped.interrupted.batch)
changed = train(config, run_dir=f"{scratch}/boundary", resume=True, learning_rate=0.01)
given = train(
    load_config(None, [f"data.dataset_dir={digits}", "training.epochs=3", "training.batch_size=128",
        "training.checkpoint_every=1", "training.deterministic=true", "training.schedule=cosine",
        "training.warmup_epochs=1", 'data.augment=[{name = "pad_crop", pad = 2}]', TINY,
        "training.rate_changes=[{epoch = 1, batch = 0, rate = 0.01}]"]),
    run_dir=f"{scratch}/given",
)
a = load_model(changed.final_checkpoint).get_weights()
b = load_model(given.final_checkpoint).get_weights()
print("lr difference", max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)))

class Terminate(keras.callbacks.Callback):
    # Sends SIGTERM (what a job scheduler sends) while batch 6 of epoch 1 trains.
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == 1 and batch == 6:
            os.kill(os.getpid(), signal.SIGTERM)

terminated = train(config, run_dir=f"{scratch}/terminated", callbacks=[Terminate()])
print("terminated by", terminated.interrupted.by, "at", terminated.interrupted.epoch,
      terminated.interrupted.batch)
after = train(config, run_dir=f"{scratch}/terminated", resume=True)
c = load_model(after.final_checkpoint).get_weights()
print("sigterm difference", max(float(np.max(np.abs(x - y))) for x, y in zip(a_straight, c)))
""".replace("TINY", repr(TINY))


def run_python(code, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip


def test_ctrl_c_mid_epoch_then_resume_gives_the_weights_of_an_uninterrupted_run(
    tmp_path, digits_dir
):
    completed = run_python(EXACT_RESUME, digits_dir, tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "interrupted at 1 5" in completed.stdout  # epoch 1, after 5 of its 10 batches
    difference = float(completed.stdout.split("max difference")[1].split()[0])
    assert difference <= 1e-6
    # The resumed run trained past the interrupt: it is gone, never resumed by mistake.
    assert not (tmp_path / "stopped" / "interrupt.keras").exists()
    assert not (tmp_path / "stopped" / "interrupt.json").exists()
    history = json.loads((tmp_path / "stopped" / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]
    # The resumed epoch's row counts its batches from before the interrupt too.
    straight = json.loads((tmp_path / "straight" / "history.json").read_text())
    assert history["loss"] == pytest.approx(straight["loss"], rel=1e-6)
    assert history["accuracy"] == pytest.approx(straight["accuracy"], rel=1e-6)
    assert history["learning_rate"] == pytest.approx(straight["learning_rate"], rel=1e-6)
    # A --lr change at an epoch boundary equals a run whose config holds that change.
    assert "boundary at 1 0" in completed.stdout
    assert float(completed.stdout.split("lr difference")[1].split()[0]) <= 1e-6
    # SIGTERM saves and resumes exactly as ctrl+c does.
    assert "terminated by SIGTERM at 1 7" in completed.stdout
    assert float(completed.stdout.split("sigterm difference")[1].split()[0]) <= 1e-6


def start_training(run_dir, digits_dir, *extra):
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "--checkpoints", str(run_dir),
         "--set", f"data.dataset_dir={digits_dir}", "--set", TINY,
         "--set", "training.batch_size=8", "--set", "training.schedule=constant", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip


def wait_for(path: Path, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_the_ctrl_c_workflow_through_the_script(tmp_path, digits_dir):
    run_dir = tmp_path / "run"
    process = start_training(
        run_dir, digits_dir, "--epochs", "4", "--set", "training.checkpoint_every=1"
    )
    # The first epoch is done when the history appears; ctrl+c lands in the second.
    wait_for(run_dir / "history.json", process)
    process.send_signal(signal.SIGINT)
    output, errors = process.communicate(timeout=240)
    assert process.returncode == 130, errors[-3000:]
    assert "finishing the current batch" in errors
    resume_line = [line for line in output.splitlines() if line.startswith("resume with: ")]
    assert resume_line == [f"resume with: python train.py --checkpoints {run_dir} --resume"]
    state = json.loads((run_dir / "interrupt.json").read_text())
    assert state["epoch"] >= 1 and (run_dir / "interrupt.keras").is_file()

    # A second run on a directory in use is refused by the lock: held here as a running
    # training run holds it (a real one might end before the second has loaded Keras).
    assert not (run_dir / "train.lock").exists()  # released at every exit
    with open(run_dir / "train.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("12345")
        lock.flush()
        refused = subprocess.run(
            [sys.executable, str(REPO / "train.py"), "--checkpoints", str(run_dir), "--resume"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert refused.returncode == 2 and "another training run (pid 12345)" in refused.stderr
    held = start_training(run_dir, digits_dir, "--resume", "--lr", "0.01")
    output, errors = held.communicate(timeout=300)
    assert held.returncode == 0, errors[-3000:]
    # The resumed partial epoch is numbered as the run numbers it, and counts its batches
    # from where it stopped to the end of the epoch (1257 images in batches of 8: 158).
    lines = output.splitlines()
    resumed_epoch = f"Epoch {state['epoch'] + 1}/4"
    assert resumed_epoch in lines, output[-2000:]
    assert lines[lines.index(resumed_epoch) + 1].startswith("158/158 ")
    if state["batch"]:
        assert f"(epoch {state['epoch'] + 1} resumes at batch {state['batch'] + 1})" in output
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3, 4]
    # The rate given on resume is the rate used from the resumed epoch on.
    assert history["learning_rate"][-1] == pytest.approx(0.01)
    assert history["learning_rate"][0] == pytest.approx(0.05)
    assert json.loads((run_dir / "latest.json").read_text())["checkpoint"] == "epoch_0004.keras"
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["packages"]["keras"] and len(info["data"]) == 2
    assert "resuming from" in (run_dir / "train.log").read_text()
    assert not (run_dir / "train.lock").exists()


def test_sigterm_saves_the_position_and_exits_143(tmp_path, digits_dir):
    run_dir = tmp_path / "run"
    process = start_training(run_dir, digits_dir, "--epochs", "4")
    wait_for(run_dir / "history.json", process)
    process.send_signal(signal.SIGTERM)
    output, errors = process.communicate(timeout=240)
    assert process.returncode == 143, errors[-3000:]
    assert "SIGTERM: finishing the current batch" in errors
    assert f"resume with: python train.py --checkpoints {run_dir} --resume" in output
    assert (run_dir / "interrupt.keras").is_file()
    assert "interrupted by SIGTERM " in (run_dir / "train.log").read_text()


SECOND_CTRL_C = """
import os, signal, sys
import keras
from pipeline.config import load_config
from pipeline.training.start import train

class TwiceCtrlC(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

config = load_config(None, [f"data.dataset_dir={sys.argv[1]}", "training.epochs=2", TINY])
result = train(config, run_dir=sys.argv[2], callbacks=[TwiceCtrlC()])
print("stopped at once", result.interrupted.checkpoint)
print("handler restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
""".replace("TINY", repr(TINY))


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path, digits_dir):
    completed = run_python(SECOND_CTRL_C, digits_dir, tmp_path / "run")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "stopped at once None" in completed.stdout  # nothing saved yet
    assert "handler restored True" in completed.stdout
    run_dir = tmp_path / "run"
    assert not (run_dir / "interrupt.keras").exists() and not (run_dir / "train.lock").exists()
    # It logs itself and the command that goes on (here: starting over, nothing saved).
    log = (run_dir / "train.log").read_text()
    assert "quit at once by a second ctrl+c" in log and "nothing was saved yet" in log
    assert f"resume with: python train.py --checkpoints {run_dir} --config " in log
