"""Going back to an epoch checkpoint, and a run that diverges, through train.py itself."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'

# train.py's main, several times in one process (Keras starts once).
BRANCHES = """
import json, sys
import train

digits, run_dir, diverging = sys.argv[1], sys.argv[2], sys.argv[3]
common = ["--set", f"data.dataset_dir={digits}", "--set", TINY, "--set", "training.batch_size=256",
          "--set", "training.checkpoint_every=2", "--set", "training.schedule=constant"]
codes = {}
codes["first"] = train.main(["--checkpoints", run_dir, "--epochs", "6", *common])
codes["back"] = train.main(["--checkpoints", run_dir, "--start_epoch", "2", "--epochs", "4",
                            "--lr", "0.01"])
codes["refused"] = train.main(["--checkpoints", run_dir, "--start_epoch", "6", "--epochs", "6"])
codes["good"] = train.main(["--checkpoints", diverging, "--epochs", "1", *common,
                            "--set", "training.checkpoint_every=1"])
codes["diverged"] = train.main(["--checkpoints", diverging, "--resume", "--epochs", "3",
                                "--lr", "1e30"])
# A data set without a val split: settings that watch one are refused; training runs
# without validation and says so.
no_val = ["--checkpoints", sys.argv[5], "--epochs", "1", *common,
          "--set", f"data.dataset_dir={sys.argv[4]}"]
codes["watching"] = train.main([*no_val, "--set", 'training.best_metric="val_accuracy"'])
codes["no_val"] = train.main(no_val)
print("CODES " + json.dumps(codes))
""".replace("TINY", repr(TINY))


def test_going_back_sets_the_branch_aside_and_a_diverged_run_fails_with_its_last_checkpoint(
    tmp_path, digits_dir
):
    run_dir, diverging = tmp_path / "run", tmp_path / "diverging"
    no_val_data, no_val_run = tmp_path / "no_val_data", tmp_path / "no_val_run"
    shutil.copytree(digits_dir, no_val_data, ignore=shutil.ignore_patterns("val.h5"))
    completed = subprocess.run(
        [sys.executable, "-c", BRANCHES, str(digits_dir), str(run_dir), str(diverging),
         str(no_val_data), str(no_val_run)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(text for text in completed.stdout.splitlines() if text.startswith("CODES "))
    codes = json.loads(line.removeprefix("CODES "))
    assert codes == {
        "first": 0, "back": 0, "refused": 2, "good": 0, "diverged": 3, "watching": 2, "no_val": 0
    }  # fmt: skip

    # Epochs 1-6, back to 2, on to 4: the abandoned branch's 4 and 6 are set aside.
    abandoned = list((run_dir / "abandoned").iterdir())
    assert len(abandoned) == 1 and abandoned[0].name.endswith("_after_epoch_0002")
    assert sorted(path.name for path in abandoned[0].glob("epoch_*.keras")) == [
        "epoch_0004.keras", "epoch_0006.keras"
    ]  # fmt: skip
    assert sorted(path.name for path in run_dir.glob("epoch_*.keras")) == [
        "epoch_0002.keras", "epoch_0004.keras"
    ]  # fmt: skip
    # --start_epoch 6 names where its checkpoint went, and the command that loads it.
    refusals = [text for text in completed.stderr.splitlines() if text.startswith("error: ")]
    assert f"--model {abandoned[0] / 'epoch_0006.keras'} --start_epoch 6" in refusals[0]
    # The history holds the current branch only: epochs 3 and 4 at the new rate.
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["learning_rate"] == [0.05000000074505806] * 2 + [0.009999999776482582] * 2
    old = json.loads((abandoned[0] / "history.json").read_text())
    assert old["epoch"] == [1, 2, 3, 4, 5, 6] and old["loss"][:2] == history["loss"][:2]
    log = (run_dir / "train.log").read_text()
    assert f"moved to {abandoned[0]}" in log and "config changed: training.epochs: 6 -> 4" in log

    # A diverged run: exit 3 with one line saying what to do; its last good checkpoint
    # stays the latest, and no checkpoint holds the diverged weights.
    assert len(refusals) == 3 and "training diverged in epoch 2" in refusals[1]
    assert f"--checkpoints {diverging} --resume --lr " in refusals[1]
    latest = json.loads((diverging / "latest.json").read_text())
    assert latest["checkpoint"] == "epoch_0001.keras"
    assert sorted(path.name for path in diverging.glob("*.keras")) == ["epoch_0001.keras"]

    # Without a val split.
    assert refusals[2] == (
        f"error: training.best_metric = 'val_accuracy' watches the validation split, but "
        f"{no_val_data / 'val.h5'} does not exist; build one (build_dataset.py, e.g. "
        f"--val-size) or watch a training metric ('accuracy')"
    )
    no_val_log = (no_val_run / "train.log").read_text()
    assert f"no validation split ({no_val_data / 'val.h5'} does not exist)" in no_val_log
    assert "val_loss" not in json.loads((no_val_run / "history.json").read_text())

    # Two real digits runs compared: the branch with its --lr, and the run without val.
    from pipeline.evaluation.run_comparison import compare_runs

    rows, table, picture, data = compare_runs([run_dir, no_val_run], tmp_path / "comparison")
    assert [row["run"] for row in rows] == ["run", "no_val_run"]
    assert rows[0]["epochs"] == 4 and rows[0]["lr_changes"][0]["rate"] == 0.01
    assert rows[0]["best_rank_1"] == max(history["val_accuracy"])
    assert rows[0]["training_seconds"] > 0
    assert rows[1]["best_rank_1"] is None and "-" in table.splitlines()[3]
    # The same training data; one run has no val split.
    assert "note: the runs were validated on different data, or some without" in table
    assert picture.stat().st_size > 10_000 and json.loads(data.read_text())["runs"] == rows
