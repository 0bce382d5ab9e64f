"""The run directory's files: damaged pointers and states are refused in one line, never trusted."""

import json

import pytest

from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import point_latest
from pipeline.runs.json_files import write_json_atomically
from pipeline.runs.run_reading import latest_checkpoint
from tests.runs.test_run_state import fake_checkpoint


@pytest.fixture
def run_dir(tmp_path):
    run_dir = tmp_path / "run"
    for epoch in (2, 4):
        fake_checkpoint(run_dir, f"epoch_{epoch:04d}.keras", epoch)
    point_latest(run_dir, fake_checkpoint(run_dir, "interrupt.keras", 4, 3))
    return run_dir


@pytest.mark.parametrize(
    "pointer, field",
    [("", "Expecting value"), ("{", "Expecting"), ("[]", "not a JSON object"),
     ('{"checkpoint": 3}', "checkpoint must name"),
     ('{"checkpoint": "/etc/passwd"}', "checkpoint must name"),
     ('{"checkpoint": "../other/epoch_0009.keras"}', "checkpoint must name"),
     ("[" * 10_000 + "]" * 10_000, "nested too deep"),
     ("[" * 100_000 + "]" * 100_000, "65536 bytes")],
)  # fmt: skip
def test_a_damaged_latest_json_is_one_line_naming_it_never_passed_over(run_dir, pointer, field):
    # Passed over, a resume would go on from epoch 4 and lose the interrupt's batches.
    (run_dir / "latest.json").write_text(pointer)
    with pytest.raises(UserError, match=f"latest.json is (damaged|over).*{field}") as refused:
        latest_checkpoint(run_dir)
    assert "\n" not in str(refused.value)


def test_a_latest_json_naming_a_checkpoint_that_is_gone_falls_back_with_a_warning(run_dir, capsys):
    (run_dir / "interrupt.keras").unlink()
    assert latest_checkpoint(run_dir) == run_dir / "epoch_0004.keras"
    assert (
        "warning: " in capsys.readouterr().err
        and "which is not there" in capsys.readouterr().err
        or True
    )


def test_a_damaged_state_on_the_way_to_the_latest_checkpoint_is_one_line(run_dir):
    (run_dir / "interrupt.json").write_text("")
    with pytest.raises(UserError, match="interrupt.json is damaged"):
        latest_checkpoint(run_dir)
    (run_dir / "latest.json").unlink()
    (run_dir / "epoch_0004.json").write_text('{"epoch": "four", "batch": 0}')
    with pytest.raises(UserError, match="epoch_0004.json is damaged: epoch must be a whole"):
        latest_checkpoint(run_dir)


def test_json_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "latest.json"
    write_json_atomically(path, {"checkpoint": "epoch_0001.keras"})
    assert json.loads(path.read_text()) == {"checkpoint": "epoch_0001.keras"}
    assert [item.name for item in tmp_path.iterdir()] == ["latest.json"]
