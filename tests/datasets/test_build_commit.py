"""A build is old-or-new at every instant: killed at any step of its final moves, every
reader sees the previous data set or the new one whole, never a mix of the two."""

import os
from pathlib import Path

import pytest

import pipeline.datasets.hdf5_commit as hdf5_commit
from pipeline.datasets import digits
from pipeline.datasets.hdf5_commit import STAGING_DIR
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import check_same_build, read_split_info
from pipeline.errors import UserError

SPLITS = ("train", "val", "test")


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs (no except clause catches it)."""


def build_ids(dataset_dir):
    """What a reader sees: the build id of each split (each read finishes a committed build)."""
    return {split: read_split_info(split_path(dataset_dir, split)).build_id for split in SPLITS}


@pytest.mark.parametrize("kill_at", range(6))
def test_a_build_killed_at_any_move_leaves_the_old_set_or_the_new_one(
    tmp_path, monkeypatch, kill_at
):
    dataset_dir = tmp_path / "digits"
    digits.build(dataset_dir)
    old = build_ids(dataset_dir)
    assert len(set(old.values())) == 1

    calls = []
    real_replace = os.replace

    def replace_then_die(source, target):
        # The final moves: the COMMITTED mark, then each staged file into place (5 files).
        moving_in = Path(target).parent.name != STAGING_DIR
        final = "COMMITTED" in str(target) or (
            Path(source).parent.name == STAGING_DIR and moving_in
        )
        if final and len(calls) == kill_at:
            raise Killed
        calls.append(target) if final else None
        real_replace(source, target)

    monkeypatch.setattr(hdf5_commit.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        digits.build(dataset_dir, seed=1, overwrite=True)
    monkeypatch.setattr(hdf5_commit.os, "replace", real_replace)

    seen = build_ids(dataset_dir)
    assert len(set(seen.values())) == 1, seen  # one build, whichever it is
    # Killed before the COMMITTED mark: the old set; after it: the new one.
    assert (seen == old) == (kill_at == 0)
    assert not (dataset_dir / STAGING_DIR).exists()


def test_a_build_that_finishes_moves_everything_and_leaves_no_staging(tmp_path):
    digits.build(tmp_path / "digits")
    assert sorted(path.name for path in (tmp_path / "digits").iterdir()) == [
        "build_summary.json", "mean.json", "test.h5", "train.h5", "val.h5"
    ]  # fmt: skip


def test_readers_refuse_splits_of_different_builds(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    digits.build(first)
    digits.build(second, seed=1)
    os.replace(split_path(second, "val"), split_path(first, "val"))
    with pytest.raises(UserError, match="come from different builds"):
        check_same_build(*(read_split_info(split_path(first, s)) for s in ("train", "val")))
