"""Where a run starts and what going back leaves behind: on folders of stand-in files."""

import datetime
import json
from pathlib import Path

import pytest

from pipeline.advice import Invocation
from pipeline.config import ExperimentConfig, TrainingConfig
from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import point_latest, read_state
from pipeline.runs.history import write_history
from pipeline.runs.rewind import apply_start
from pipeline.runs.run_dir import list_checkpoints
from pipeline.runs.run_reading import latest_checkpoint
from pipeline.runs.run_state import StartRequest, resolve_start
from pipeline.runs.start_config import (
    check_epochs,
    config_differences,
    config_for_start,
    config_with_rate,
)

NOW = datetime.datetime(2026, 12, 2, 17, 30, 0)


def fake_checkpoint(run_dir: Path, name: str, epoch: int, batch: int = 0, changes=()) -> Path:
    """A checkpoint file (never loaded here) with the state file training writes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_bytes(b"weights")
    config = {"training": {"learning_rate": 0.1, "rate_changes": list(changes)}}
    state = {"checkpoint": name, "epoch": epoch, "batch": batch, "config": config}
    path.with_suffix(".json").write_text(json.dumps(state))
    return path


def fake_history(run_dir: Path, epochs: int, offset: float = 0.0) -> None:
    history = {"epoch": list(range(1, epochs + 1)), "loss": [offset + e for e in range(epochs)]}
    write_history(run_dir, history)


@pytest.fixture
def six_epochs(tmp_path):
    """A run to epoch 6 with checkpoints every 2, best after 5, and a later interrupt."""
    run_dir = tmp_path / "run"
    for epoch in (2, 4, 6):
        fake_checkpoint(run_dir, f"epoch_{epoch:04d}.keras", epoch)
    fake_checkpoint(run_dir, "best.keras", 5)
    point_latest(run_dir, fake_checkpoint(run_dir, "interrupt.keras", 6, 3))
    fake_history(run_dir, 6)
    (run_dir / "config.json").write_text(json.dumps({"training": {"learning_rate": 0.1}}))
    return run_dir


def start(run_dir, **request):
    return resolve_start(run_dir, StartRequest(**request))


def settle(config, run_dir, point, learning_rate, command=None):
    """The config a start trains with: the run's changes kept, the start's rate settled
    (ten batches an epoch)."""
    config, notes = config_for_start(config, run_dir, point)
    command = command or Invocation()
    config, _ = config_with_rate(config, run_dir, point, learning_rate, 10, command)
    return config, notes


def history_epochs(run_dir):
    return json.loads((run_dir / "history.json").read_text())["epoch"]


def test_resume_takes_the_latest_checkpoint(six_epochs):
    point = start(six_epochs, resume=True)
    assert point.checkpoint.name == "interrupt.keras" and point.position == (6, 3)
    assert not point.rewind and apply_start(six_epochs, point, NOW) is None


def test_going_back_moves_the_later_branch_aside_and_cuts_the_history(six_epochs):
    point = start(six_epochs, start_epoch=2)
    assert point.rewind and point.position == (2, 0)
    # Deciding writes nothing.
    assert sorted(list_checkpoints(six_epochs)) == [2, 4, 6]
    folder = apply_start(six_epochs, point, NOW)
    assert folder == six_epochs / "abandoned" / "20261202-173000_after_epoch_0002"
    moved = sorted(path.name for path in folder.iterdir())
    assert moved == sorted(
        ["epoch_0004.keras", "epoch_0004.json", "epoch_0006.keras", "epoch_0006.json",
         "interrupt.keras", "interrupt.json", "best.keras", "best.json",
         "history.json", "history.csv", "training.png", "config.json"]
    )  # fmt: skip
    assert sorted(list_checkpoints(six_epochs)) == [2]
    assert not (six_epochs / "interrupt.keras").exists()
    assert latest_checkpoint(six_epochs).name == "epoch_0002.keras"
    assert history_epochs(six_epochs) == [1, 2]
    assert history_epochs(folder) == [1, 2, 3, 4, 5, 6]


def test_an_abandoned_checkpoint_is_refused_naming_where_it_went(six_epochs):
    folder = apply_start(six_epochs, start(six_epochs, start_epoch=2), NOW)
    with pytest.raises(UserError) as refused:
        start(six_epochs, start_epoch=6)
    message = str(refused.value)
    assert str(folder) in message and "epochs with checkpoints: 2" in message
    # The command it names works: the user names the abandoned checkpoint.
    command = message.split("go back to it with: ")[1].split()
    model = Path(command[command.index("--model") + 1])
    point = start(six_epochs, model_path=model, start_epoch=6)
    assert point.position == (6, 0)


def test_going_back_to_a_checkpoint_from_elsewhere_sets_the_whole_branch_here_aside(six_epochs):
    first = apply_start(six_epochs, start(six_epochs, start_epoch=2), NOW)
    fake_checkpoint(six_epochs, "epoch_0003.keras", 3)
    fake_history(six_epochs, 3, offset=100.0)  # the new branch's own epochs
    point = start(six_epochs, model_path=first / "epoch_0006.keras")
    second = apply_start(six_epochs, point, NOW)
    assert second.name == "20261202-173000_after_epoch_0006"
    assert sorted(path.name for path in second.glob("*.keras")) == [
        "epoch_0002.keras", "epoch_0003.keras"
    ]  # fmt: skip
    assert list_checkpoints(six_epochs) == {} and latest_checkpoint(six_epochs) is None
    # The history is that of the branch the checkpoint came from.
    history = json.loads((six_epochs / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3, 4, 5, 6] and history["loss"][0] == 0.0


def test_going_back_to_the_newest_checkpoint_moves_nothing(tmp_path):
    run_dir = tmp_path / "run"
    point_latest(run_dir, fake_checkpoint(run_dir, "epoch_0004.keras", 4))
    fake_history(run_dir, 4)
    assert apply_start(run_dir, start(run_dir, start_epoch=4), NOW) is None
    assert not (run_dir / "abandoned").exists() and history_epochs(run_dir) == [1, 2, 3, 4]


def test_a_fresh_start_in_a_used_directory_needs_overwrite_which_clears_it(six_epochs):
    apply_start(six_epochs, start(six_epochs, start_epoch=2), NOW)
    with pytest.raises(UserError, match="--resume; or start over with: .*--overwrite"):
        start(six_epochs)
    point = start(six_epochs, overwrite=True)
    assert point.clear and point.checkpoint is None
    apply_start(six_epochs, point, NOW)
    assert sorted(path.name for path in six_epochs.iterdir()) == []


def test_advice_after_a_run_that_saved_no_checkpoint_never_goes_in_a_circle(tmp_path):
    # A double ctrl+c before the first checkpoint leaves records but nothing to resume.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fake_history(run_dir, 1)
    for request in ({}, {"resume": True}):
        with pytest.raises(UserError) as refused:
            start(run_dir, **request)
        assert "--overwrite" in str(refused.value) and "with --resume" not in str(refused.value)
    assert start(run_dir, overwrite=True).clear
    # With its config.json, the command starts it over with the run's own settings.
    (run_dir / "config.json").write_text("{}")
    with pytest.raises(
        UserError,
        match=f"--config {run_dir / 'config.json'} --set 'training.rate_changes="
        r"\[\]' --overwrite",
    ):
        start(run_dir, resume=True)
    # Nothing there at all: --resume says how to start.
    with pytest.raises(UserError, match=r"no run there yet; start one with: python train.py"):
        start(tmp_path / "new", resume=True)


def test_contradicting_options_are_refused(six_epochs):
    with pytest.raises(UserError, match="give one of them"):
        start(six_epochs, resume=True, start_epoch=2)
    with pytest.raises(UserError, match=">= 0"):
        start(six_epochs, start_epoch=-1)
    with pytest.raises(UserError, match="does not exist"):
        start(six_epochs, model_path=six_epochs / "missing.keras")


def test_a_start_with_nothing_left_to_train_names_the_command_that_trains_on(six_epochs):
    point = start(six_epochs, resume=True)
    command = Invocation(checkpoints=str(six_epochs), overrides=("training.seed=3",), lr=0.5)
    check_epochs(point, TrainingConfig(epochs=7), six_epochs, command)
    # The advice keeps what the user gave (--set, --lr) and changes what it must.
    with pytest.raises(
        UserError, match=r"--checkpoints \S+ --set training.seed=3 --resume --epochs 16 --lr 0.5"
    ):
        check_epochs(point, TrainingConfig(epochs=6), six_epochs, command)


def experiment(**training):
    return ExperimentConfig(training=TrainingConfig(learning_rate=0.1, **training))


def test_a_plain_resume_keeps_the_rate_changes_of_the_run(tmp_path):
    run_dir = tmp_path / "run"
    change = {"epoch": 3, "batch": 5, "rate": 0.01}
    point_latest(run_dir, fake_checkpoint(run_dir, "interrupt.keras", 4, 2, [change]))
    saved = experiment(rate_changes=(change,)).to_dict()
    (run_dir / "config.json").write_text(json.dumps(saved))
    # The caller's config (a preset) knows nothing of the change: the run's record does.
    config, notes = settle(experiment(), run_dir, start(run_dir, resume=True), None)
    assert config.training.rate_changes == (change,) and notes == []
    config, _ = settle(experiment(), run_dir, start(run_dir, resume=True), 0.002)
    assert config.training.rate_changes[-1] == {"epoch": 4, "batch": 2, "rate": 0.002}


def test_going_back_drops_the_rate_changes_of_the_abandoned_branch(six_epochs):
    changes = [{"epoch": 1, "batch": 0, "rate": 0.05}, {"epoch": 4, "batch": 0, "rate": 0.01}]
    (six_epochs / "config.json").write_text(json.dumps(experiment(rate_changes=changes).to_dict()))
    point = start(six_epochs, start_epoch=2)
    config, _ = settle(experiment(), six_epochs, point, None)
    assert config.training.rate_changes == (changes[0],)


def test_a_new_starting_rate_after_an_lr_change_is_refused_with_the_option_that_works(tmp_path):
    run_dir = tmp_path / "run"
    change = {"epoch": 2, "batch": 0, "rate": 0.01}
    point_latest(run_dir, fake_checkpoint(run_dir, "epoch_0002.keras", 2, 0, [change]))
    (run_dir / "config.json").write_text(json.dumps(experiment(rate_changes=(change,)).to_dict()))
    other = ExperimentConfig(training=TrainingConfig(learning_rate=0.3))
    with pytest.raises(UserError, match="from here: python train.py --resume --lr 0.3"):
        settle(other, run_dir, start(run_dir, resume=True), None, Invocation(resume=True))


def test_a_fresh_start_with_lr_starts_at_that_rate(tmp_path):
    config, _ = settle(experiment(), tmp_path, start(tmp_path / "new"), 0.02)
    assert config.training.learning_rate == 0.02 and config.training.rate_changes == ()


def test_config_differences_name_each_changed_value():
    before = experiment(epochs=20).to_dict()
    after = experiment(epochs=30, schedule="cosine").to_dict()
    assert config_differences(before, after) == [
        "training.epochs: 20 -> 30",
        "training.schedule: 'constant' -> 'cosine'",
    ]


def test_a_checkpoint_renamed_by_start_epoch_is_noted(six_epochs):
    point = start(six_epochs, model_path=six_epochs / "epoch_0004.keras", start_epoch=5)
    _, notes = config_for_start(experiment(), six_epochs, point)
    assert notes and "saved after epoch 4" in notes[0]
    assert read_state(six_epochs / "epoch_0004.keras")["epoch"] == 4


def test_a_run_forked_into_a_new_directory_takes_the_history_of_its_checkpoint(six_epochs):
    fork = six_epochs.parent / "fork"
    point = start(fork, model_path=six_epochs / "epoch_0004.keras")
    assert apply_start(fork, point, NOW) is None
    assert history_epochs(fork) == [1, 2, 3, 4] and not (fork / "abandoned").exists()
    assert latest_checkpoint(fork) is None  # nothing of the fork is trained yet


def test_the_runs_changes_replace_those_of_a_config_given_and_say_so_only_then(tmp_path):
    run_dir = tmp_path / "run"
    change = {"epoch": 3, "batch": 5, "rate": 0.01}
    point_latest(run_dir, fake_checkpoint(run_dir, "interrupt.keras", 4, 2, [change]))
    other = experiment(rate_changes=({"epoch": 1, "batch": 0, "rate": 0.05},))
    point = start(run_dir, resume=True)
    config, notes = config_for_start(other, run_dir, point, config_given=True)
    assert config.training.rate_changes == (change,) and "are replaced by the run's" in notes[0]
    # No config given: the one read back is the run's own (another branch's, after a
    # rewind), not something the user said: nothing to note.
    config, notes = config_for_start(other, run_dir, point)
    assert config.training.rate_changes == (change,) and notes == []


def test_a_used_directory_whose_decay_ended_advises_going_on_with_a_rate(six_epochs):
    # A finished 6-epoch cosine run: "continue it" must not be refused again (its rate is
    # 0 at the end), and going back names an epoch before the end.
    finished = ExperimentConfig(training=TrainingConfig(schedule="cosine", epochs=6))
    (six_epochs / "config.json").write_text(finished.to_json())
    (six_epochs / "interrupt.keras").unlink()
    (six_epochs / "interrupt.json").unlink()
    point_latest(six_epochs, six_epochs / "epoch_0006.keras")
    command = Invocation(checkpoints=str(six_epochs))
    with pytest.raises(UserError) as refused:
        start(six_epochs, invocation=command)
    message = str(refused.value)
    last_rate = repr(
        TrainingConfig(schedule="cosine", epochs=6).learning_rate
        * 0.5
        * (1 + __import__("math").cos(__import__("math").pi * 5 / 6))
    )
    assert f"--resume --epochs 16 --lr {last_rate}" in message
    assert "--start_epoch 4" in message and "--start_epoch 6" not in message
