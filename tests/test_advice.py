"""Advice as data: every refusal's advised command is run, and does what the user meant.

A catalog of refusals met between states of a run. For each, the advised command is
taken from the refusal's own line, run as it stands, and must train (exit 0, not a
second refusal) on the same data, with the user's --set and --lr kept, and with
rates that never jump unasked.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.advice import Invocation

REPO = Path(__file__).resolve().parent.parent
TINY = 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'

# Every scenario in one process (Keras starts once): (name, script, arguments, which
# advised command of the refusal to follow).
CATALOG = """
import contextlib, io, json, shlex, sys
import train, train_decay

MAINS = {"train.py": train.main, "train_decay.py": train_decay.main}
digits, root = sys.argv[1], sys.argv[2]
common = ["--set", f"data.dataset_dir={digits}", "--set", TINY, "--set", "training.batch_size=256"]


def run(script, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = MAINS[script](argv)
    return code, out.getvalue(), err.getvalue()


def advised(stderr):
    # The commands a refusal names: each starts at 'python SCRIPT' and runs to the end
    # of its clause (a token ending in ';' or ',').
    line = [text for text in stderr.splitlines() if text.startswith("error: ")][-1]
    tokens, commands = shlex.split(line), []
    for index, token in enumerate(tokens):
        if token == "python" and index + 1 < len(tokens) and tokens[index + 1] in MAINS:
            command = []
            for item in tokens[index + 1:]:
                if item.endswith((";", ",")):
                    command.append(item[:-1])
                    break
                command.append(item)
            commands.append(command)
    return line, commands


def scenario(name, script, argv, follow=0):
    code, _, err = run(script, argv)
    line, commands = advised(err) if code == 2 else ("", [])
    record = {"name": name, "refused": code, "line": line, "commands": commands}
    if commands:
        command = commands[follow]
        code, out, err = run(command[0], command[1:])
        record.update(followed=command, code=code, stderr=err[-2000:])
    print("SCENARIO " + json.dumps(record), flush=True)


def prepare(script, argv):
    code, _, err = run(script, argv)
    assert code == 0, err[-2000:]


cosine = [*common, "--set", 'training.schedule="cosine"']
prepare("train.py", ["--checkpoints", f"{root}/cosine", *cosine, "--epochs", "3"])
scenario("finished cosine, plain --resume", "train.py",
         ["--checkpoints", f"{root}/cosine", "--resume"])
scenario("finished cosine, --resume --epochs", "train.py",
         ["--checkpoints", f"{root}/cosine", "--resume", "--epochs", "16"])

prepare("train_decay.py", ["--checkpoints", f"{root}/decay", *common, "--epochs", "2"])
scenario("finished decay, --resume --set schedule", "train_decay.py",
         ["--checkpoints", f"{root}/decay", "--resume", "--set", "training.schedule=polynomial"])

constant = [*common, "--set", "training.schedule=constant"]
prepare("train.py", ["--checkpoints", f"{root}/constant", *constant, "--epochs", "2"])
scenario("finished run, --resume --lr", "train.py",
         ["--checkpoints", f"{root}/constant", "--resume", "--lr", "0.001"])
prepare("train.py", ["--checkpoints", f"{root}/used", *constant, "--epochs", "2"])
scenario("used directory, --lr without --resume", "train.py",
         ["--checkpoints", f"{root}/used", *constant, "--lr", "0.01"])
prepare("train.py", ["--checkpoints", f"{root}/again", *constant, "--epochs", "2"])
scenario("--start_epoch 0 on a used directory", "train.py",
         ["--checkpoints", f"{root}/again", *constant, "--start_epoch", "0", "--epochs", "1"])

branch = ["--checkpoints", f"{root}/branch"]
prepare("train.py", [*branch, *constant, "--epochs", "4", "--set", "training.checkpoint_every=2"])
prepare("train.py", [*branch, "--start_epoch", "2", "--epochs", "3"])
scenario("an abandoned epoch, --start_epoch", "train.py",
         [*branch, "--start_epoch", "4", "--epochs", "6"])

scenario("nothing to resume yet", "train.py",
         ["--checkpoints", f"{root}/new", "--resume", *constant, "--epochs", "1"])
scenario("train_decay.py given another schedule", "train_decay.py",
         ["--checkpoints", f"{root}/chosen", *cosine, "--epochs", "1"], follow=1)
""".replace("TINY", repr(TINY))


def epoch_rates(run_dir: Path) -> list[float]:
    return json.loads((run_dir / "history.json").read_text())["learning_rate"]


def never_jumps(rates: list[float]) -> bool:
    """No epoch starts above the epoch before it (float32 rounding aside)."""
    return all(
        later <= earlier * (1 + 1e-6) for earlier, later in zip(rates, rates[1:], strict=False)
    )


def test_every_advised_command_runs_and_trains_what_was_meant(tmp_path, digits_dir):
    completed = subprocess.run(
        [sys.executable, "-c", CATALOG, str(digits_dir), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg"),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    scenarios = {
        record["name"]: record
        for record in (
            json.loads(text.removeprefix("SCENARIO "))
            for text in completed.stdout.splitlines()
            if text.startswith("SCENARIO ")
        )
    }
    assert len(scenarios) == 9, list(scenarios)
    for name, record in scenarios.items():
        # Refused in one line, naming a command; that command trains, unrefused.
        assert record["refused"] == 2 and record["commands"], (name, record)
        assert record["code"] == 0, (name, record["followed"], record["stderr"])
        run_dir = Path(record["followed"][record["followed"].index("--checkpoints") + 1])
        config = json.loads((run_dir / "config.json").read_text())
        assert config["data"]["dataset_dir"] == str(digits_dir), name  # the same data
    followed = {name: record["followed"] for name, record in scenarios.items()}

    # Decaying schedules extended: the rate goes on from where it was, never up.
    for name in ("finished cosine, plain --resume", "finished cosine, --resume --epochs"):
        assert "--lr" in followed[name]
    cosine = epoch_rates(tmp_path / "cosine")
    assert len(cosine) == 16 and never_jumps(cosine), cosine
    # Its config.json, changes and all, gives every rate it trained at (1257 training
    # images in batches of 256: 5 batches an epoch; the history holds float32 rates).
    from pipeline.config import load_config
    from pipeline.runs.learning_rate import rate_at

    training = load_config(tmp_path / "cosine" / "config.json").training
    assert [change["epoch"] for change in training.rate_changes] == [3, 13]
    assert [rate_at(training, epoch, 0, 5) for epoch in range(16)] == pytest.approx(
        cosine, rel=1e-6
    )
    decay = tmp_path / "decay"
    assert never_jumps(epoch_rates(decay))
    # The user's --set and --lr stay in the advice.
    assert "training.schedule=polynomial" in followed["finished decay, --resume --set schedule"]
    assert json.loads((decay / "config.json").read_text())["training"]["schedule"] == ("polynomial")
    assert epoch_rates(tmp_path / "constant")[2] == 0.0010000000474974513  # float32 0.001
    assert epoch_rates(tmp_path / "used")[2] == 0.009999999776482582  # float32 0.01
    assert "--resume" in followed["used directory, --lr without --resume"]
    assert "--overwrite" in followed["--start_epoch 0 on a used directory"]
    assert len(epoch_rates(tmp_path / "again")) == 1  # started over
    branch = followed["an abandoned epoch, --start_epoch"]
    assert "--model" in branch and branch[branch.index("--epochs") + 1] == "6"
    assert json.loads((tmp_path / "branch" / "history.json").read_text())["epoch"] == [
        1, 2, 3, 4, 5, 6
    ]  # fmt: skip
    assert "--resume" not in followed["nothing to resume yet"]
    chosen = json.loads((tmp_path / "chosen" / "config.json").read_text())["training"]
    assert chosen["schedule"] == "polynomial"


def test_an_invocation_changes_only_what_the_advice_must():
    given = Invocation(
        "train_decay.py", "runs/a b", "config/x.toml", ("training.seed=1", TINY),
        start_epoch=4, epochs=9, lr=0.00123456789,
    )  # fmt: skip
    command = shlex.split(given.command(resume=True))
    assert command == [
        "python", "train_decay.py", "--checkpoints", "runs/a b", "--config", "config/x.toml",
        "--set", "training.seed=1", "--set", TINY, "--resume", "--epochs", "9",
        "--lr", "0.00123456789",
    ]  # fmt: skip
    assert "--start_epoch" not in command  # choosing where to start replaces the others
    assert shlex.split(given.command(overwrite=True))[-1] == "--overwrite"


def test_scoring_a_preset_without_a_checkpoint_advises_training_that_preset(tmp_path):
    from pipeline.errors import UserError
    from pipeline.evaluation.target import newest_checkpoint

    training = Invocation(config="config/cifar10_resnet56_ctrl_c.toml", overrides=("a.b=1",))
    with pytest.raises(UserError) as refused:
        newest_checkpoint(tmp_path / "run", training)
    command = str(refused.value).split("train first ('")[1].split("')")[0]
    assert shlex.split(command) == [
        "python", "train.py", "--checkpoints", str(tmp_path / "run"),
        "--config", "config/cifar10_resnet56_ctrl_c.toml", "--set", "a.b=1",
    ]  # fmt: skip
