"""The ctrl+c workflow under every schedule: start, ctrl+c, `--resume --lr X`, ctrl+c,
plain `--resume`. Every batch after the first resume trains at the README's rate (the
rest of the schedule rescaled to start at X), and history.json, the plot's data and
train.log agree with what was trained."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.runs.history import plot_series

REPO = Path(__file__).resolve().parents[2]
BASE_RATE, NEW_RATE = 0.05, 0.02
EPOCHS, BATCHES = 4, 10  # digits: 1257 training images in batches of 128
SCHEDULES = {
    "constant": [],
    "step": ["training.step_every=1", "training.decay_factor=0.5"],
    "multistep": ["training.milestones=[25]", 'training.milestone_unit="iterations"'],
    "polynomial": ["training.decay_power=2.0"],
    "cosine": ["training.warmup_epochs=0.5", "training.min_learning_rate=0.001"],
    "plateau": [
        'training.plateau_monitor="loss"', "training.plateau_patience=1",
        "training.decay_factor=0.5",
    ],
}  # fmt: skip
# ctrl+c while the 14th batch trains (epoch index 1, batch index 3): saved at (1, 4); then
# while the 12th batch after the resume trains: saved at (2, 6).
FIRST_STOP, SECOND_STOP = 14, 12

WORKFLOW = """
import json, os, signal, sys
import keras
from pipeline.config import load_config
from pipeline.training.start import train

digits, scratch, schedules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
FIRST_STOP, SECOND_STOP, NEW_RATE = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])

class Rates(keras.callbacks.Callback):
    # The rate of every batch in training order (LearningRateControl, earlier in the list,
    # has set it); presses ctrl+c while batch number `stop_at` (from 1) trains.
    def __init__(self, stop_at=None):
        super().__init__()
        self.stop_at, self.rates = stop_at, []
    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        if len(self.rates) == self.stop_at:
            os.kill(os.getpid(), signal.SIGINT)

results = {}
for schedule, overrides in schedules.items():
    config = load_config(None, [
        f"data.dataset_dir={digits}", "training.epochs=4", "training.batch_size=128",
        "training.checkpoint_every=1", f"training.schedule={schedule}",
        "training.learning_rate=0.05", TINY, *overrides,
    ])
    run_dir = f"{scratch}/{schedule}"
    rates = [Rates(FIRST_STOP), Rates(SECOND_STOP), Rates()]
    first = train(config, run_dir=run_dir, callbacks=[rates[0]])
    second = train(config, run_dir=run_dir, resume=True, learning_rate=NEW_RATE,
                   callbacks=[rates[1]])
    third = train(config, run_dir=run_dir, resume=True, callbacks=[rates[2]])
    results[schedule] = {
        "stops": [[r.interrupted.epoch, r.interrupted.batch] for r in (first, second)],
        "finished": third.interrupted is None,
        "rates": [r.rates for r in rates],
    }
print("RESULTS " + json.dumps(results))
""".replace("TINY", repr('model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'))


@pytest.fixture(scope="module")
def workflow(tmp_path_factory, digits_dir):
    """The three runs of every schedule, in one process (Keras starts once)."""
    scratch = tmp_path_factory.mktemp("rates")
    completed = subprocess.run(
        [sys.executable, "-c", WORKFLOW, str(digits_dir), str(scratch), json.dumps(SCHEDULES),
         str(FIRST_STOP), str(SECOND_STOP), str(NEW_RATE)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(text for text in completed.stdout.splitlines() if text.startswith("RESULTS "))
    return scratch, json.loads(line.removeprefix("RESULTS "))


def positions(start, count):
    """`count` training positions (epoch, batch) from `start` on, in order."""
    epoch, batch = start
    for _ in range(count):
        yield epoch, batch
        epoch, batch = (epoch + 1, 0) if batch + 1 == BATCHES else (epoch, batch + 1)


def schedule_rate(schedule, epoch, batch):
    """The configured curve, written out again from the README's formulas."""
    if schedule == "step":
        return BASE_RATE * 0.5**epoch
    if schedule == "multistep":
        return BASE_RATE * (0.1 if epoch * BATCHES + batch >= 25 else 1.0)
    if schedule == "polynomial":
        return BASE_RATE * (1 - epoch / EPOCHS) ** 2
    if schedule == "cosine":
        progress = (epoch + batch / BATCHES - 0.5) / (EPOCHS - 0.5)
        return 0.001 + 0.5 * (BASE_RATE - 0.001) * (1 + math.cos(math.pi * progress))
    return BASE_RATE


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_batch_after_an_lr_resume_trains_at_the_readmes_rate(workflow, schedule):
    _scratch, results = workflow
    result = results[schedule]
    assert result["stops"] == [[1, 4], [2, 6]] and result["finished"]
    after_first_resume = result["rates"][1] + result["rates"][2]
    trained = list(positions((1, 4), len(after_first_resume)))
    assert trained[-1] == (EPOCHS - 1, BATCHES - 1)
    if schedule == "plateau":
        # --lr sets the rate; the plateau logic lowers it from there, between epochs only,
        # and the plain resume goes on at the rate reached (never back to the config's).
        assert after_first_resume[0] == pytest.approx(NEW_RATE)
        halvings = [round(-math.log2(rate / NEW_RATE)) for rate in after_first_resume]
        assert after_first_resume == pytest.approx([NEW_RATE * 0.5**k for k in halvings])
        assert all(b <= a for a, b in zip(after_first_resume, after_first_resume[1:], strict=False))
        for (epoch, batch), before, rate in zip(
            trained[1:], after_first_resume, after_first_resume[1:], strict=False
        ):
            assert batch == 0 or rate == before, (epoch, batch)
        return
    anchor = schedule_rate(schedule, 1, 4)
    expected = [NEW_RATE * schedule_rate(schedule, *where) / anchor for where in trained]
    assert after_first_resume == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_history_plot_and_log_agree_with_the_rates_trained(workflow, schedule):
    scratch, results = workflow
    rates = results[schedule]["rates"]
    run_dir = scratch / schedule
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3, 4]
    # Each epoch's row holds the rate of its first batch, also for the epochs 2 and 3
    # that were interrupted mid-way and finished after a resume.
    first_batches = [rates[0][0], rates[0][BATCHES], rates[1][BATCHES - 4], rates[2][BATCHES - 6]]
    assert history["learning_rate"] == pytest.approx(first_batches, rel=1e-6)
    series = plot_series(history, [(1.4, NEW_RATE)])
    x, y = series["learning rate/learning rate"]
    assert x == [0, 1, 2, 3, 4] and y[:-1] == history["learning_rate"]
    assert series["learning rate/--lr"] == ([1.4], [NEW_RATE])
    log = (run_dir / "train.log").read_text()
    assert "interrupted by ctrl+c in epoch 2 after batch 4 of 10" in log
    assert f"learning rate changed: --lr {NEW_RATE:g} from epoch 2, batch 5" in log
    assert "interrupted by ctrl+c in epoch 3 after batch 6 of 10" in log
    resumed = [line for line in log.splitlines() if "(epoch 3 resumes at batch 7)" in line]
    assert len(resumed) == 1 and f"learning rate {rates[2][0]:g} " in resumed[0]
    # config.json holds what the run does now: the change, for the next resume.
    saved = json.loads((run_dir / "config.json").read_text())["training"]
    assert saved["rate_changes"] == [{"epoch": 1, "batch": 4, "rate": NEW_RATE}]
