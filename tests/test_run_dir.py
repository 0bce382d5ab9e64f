"""The run directory's files: damaged pointers and states are passed over, never trusted."""

import json

import pytest

from pipeline.errors import UserError
from pipeline.run_dir import latest_checkpoint, point_latest, read_state, write_json_atomically
from tests.test_run_state import fake_checkpoint


@pytest.fixture
def run_dir(tmp_path):
    run_dir = tmp_path / "run"
    for epoch in (2, 4):
        fake_checkpoint(run_dir, f"epoch_{epoch:04d}.keras", epoch)
    point_latest(run_dir, fake_checkpoint(run_dir, "interrupt.keras", 4, 3))
    return run_dir


@pytest.mark.parametrize(
    "pointer",
    ["", "{", "[]", '{"checkpoint": 3}', '{"checkpoint": "/etc/passwd"}',
     '{"checkpoint": "../other/epoch_0009.keras"}'],
)  # fmt: skip
def test_a_damaged_latest_json_falls_back_to_the_newest_checkpoint_with_a_warning(
    run_dir, capsys, pointer
):
    (run_dir / "latest.json").write_text(pointer)
    assert latest_checkpoint(run_dir) == run_dir / "epoch_0004.keras"
    assert "warning: " in capsys.readouterr().err


def test_a_damaged_state_is_passed_over_for_the_newest_that_reads(run_dir, capsys):
    (run_dir / "interrupt.json").write_text("")
    (run_dir / "epoch_0004.json").write_text('{"epoch": "four", "batch": 0}')
    assert latest_checkpoint(run_dir) == run_dir / "epoch_0002.keras"
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2 and all(line.startswith("warning: ") for line in warnings)
    # Named by the user, a damaged state is a one-line error naming the file.
    with pytest.raises(UserError, match="epoch_0004.json is damaged"):
        read_state(run_dir / "epoch_0004.keras")


def test_json_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "latest.json"
    write_json_atomically(path, {"checkpoint": "epoch_0001.keras"})
    assert json.loads(path.read_text()) == {"checkpoint": "epoch_0001.keras"}
    assert [item.name for item in tmp_path.iterdir()] == ["latest.json"]
