"""The reproduction report: measured figures beside a preset's expected ones (no Keras)."""

import json
import shutil

import h5py
import pytest

from pipeline.config import CONFIG_DIR, ExpectedConfig, load_config
from pipeline.errors import UserError
from pipeline.evaluation.reproduction import compare_with_expected, expected_for, format_comparison

PAPER = ExpectedConfig(
    rank_1=0.9339, rank_1_low=0.9323, rank_1_high=0.9357, source="He et al. 2015, Table 6"
)
ONE_RUN = ExpectedConfig(rank_1=0.9322, rank_5=0.99, source="a reference run")


def report(rank1, rank5=0.998, split="test", mode="center"):
    return {"rank1": rank1, "rank5": rank5, "split": split, "mode": mode}


@pytest.mark.parametrize(("rank1", "inside"), [(0.9345, True), (0.9323, True), (0.9301, False)])
def test_rank_1_is_set_beside_the_expected_figure_and_its_spread(rank1, inside):
    comparison = compare_with_expected(report(rank1), PAPER)
    assert comparison["compared"] and comparison["within_spread"] is inside
    assert comparison["difference"]["rank_1"] == pytest.approx(rank1 - 0.9339)
    assert comparison["expected"]["rank_1_spread"] == [0.9323, 0.9357]
    text = format_comparison(comparison)
    assert "spread 93.23% to 93.57%" in text
    assert ("inside the spread" if inside else "outside the spread") in text


def test_a_single_reference_run_gives_a_difference_and_no_verdict():
    comparison = compare_with_expected(report(0.9290, 0.9950), ONE_RUN)
    assert comparison["within_spread"] is None
    assert comparison["difference"]["rank_5"] == pytest.approx(0.005)
    text = format_comparison(comparison)
    assert "one run, no spread given" in text and "-0.32 points" in text
    assert "rank-5 99.00%; measured 99.50%: +0.50 points" in text


def test_another_split_or_mode_is_not_compared():
    comparison = compare_with_expected(report(0.95, split="val"), PAPER)
    assert comparison["compared"] is False and "difference" not in comparison
    assert "for the test split in center mode; this is the val split" in comparison["why_not"]
    ten_crop = compare_with_expected(report(0.95, mode="ten_crop"), PAPER)
    assert ten_crop["compared"] is False


def write_state(tmp_path, config: dict | None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    model = tmp_path / "epoch_0001.keras"
    model.write_bytes(b"")
    state = (
        {"epoch": 1, "batch": 0} if config is None else {"epoch": 1, "batch": 0, "config": config}
    )
    (tmp_path / "epoch_0001.json").write_text(json.dumps(state))
    return model


def test_the_expectation_comes_from_the_run_that_made_the_checkpoint(tmp_path):
    digits = load_config()
    paper = load_config("config/cifar10_resnet110_paper.toml")
    model = write_state(tmp_path, paper.to_dict())
    expected, note = expected_for(model, digits, False, "output/datasets/cifar10/test.h5")
    assert expected == paper.expected and note is None
    # Scored on other data (--dataset), the run's figures are not compared, and say why.
    expected, why_not = expected_for(model, digits, False, "output/datasets/digits/test.h5")
    assert expected == paper.expected
    assert why_not == (
        "the run's expected figures are for output/datasets/cifar10, not output/datasets/digits"
    )


def test_without_a_record_only_an_explicit_config_for_the_scored_data_counts(tmp_path):
    digits = load_config()
    old_run = write_state(tmp_path, {"data": {}})  # a run from before [expected] existed
    assert expected_for(old_run, digits, False, "output/datasets/digits/test.h5") == (None, None)
    given = expected_for(old_run, digits, True, "output/datasets/digits/test.h5")
    assert given == (digits.expected, None)
    expected, why_not = expected_for(old_run, digits, True, "/elsewhere/test.h5")
    assert expected == digits.expected and "not /elsewhere" in why_not


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("expected.rank_1=93.39", r"must be a fraction in \[0, 1\]"),
        ('expected.source=""', "expected.source must say where"),
        ("expected.rank_1_high=0.95", "must lie in its spread"),
        ("expected.mode=crops", "expected.mode must be one of"),
    ],
)
def test_bad_expected_figures_are_refused_at_load(override, message):
    with pytest.raises(UserError, match=message):
        load_config("config/digits.toml", [override])


def test_every_preset_states_its_expected_result_as_data():
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        expected = load_config(path).expected
        assert expected.stated and expected.source, path.name


def test_a_run_that_changed_its_presets_recipe_says_how(tmp_path):
    from pathlib import Path

    from pipeline.evaluation.reproduction import recipe_changes

    run = load_config(None, ["training.epochs=10", "training.seed=3", "data.dataset_dir=/d"])
    model = write_state(tmp_path, run.to_dict())
    preset, changes = recipe_changes(model)
    # The seed and the data's folder belong to the run, not to the recipe.
    assert preset == Path("config/digits.toml") and changes == ["training.epochs: 30 -> 10"]
    comparison = compare_with_expected(report(0.97), run.expected)
    comparison |= {"preset": str(preset), "recipe_changes": changes}
    assert "recipe differs from config/digits.toml's: training.epochs: 30 -> 10" in (
        format_comparison(comparison)
    )
    unchanged = write_state(tmp_path / "unchanged", load_config().to_dict())
    assert recipe_changes(unchanged) == (Path("config/digits.toml"), [])


@pytest.fixture
def presets_folders(tmp_path, monkeypatch, digits_dir):
    """A working folder whose output/datasets/digits holds the digits (the presets'
    relative folders resolve there), and the configs of runs made in it."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(digits_dir, tmp_path / "output/datasets/digits")
    return tmp_path


def scored(report_figures, model, split_file):
    """What rank_accuracy.py records of a run's checkpoint: the comparison, made or not."""
    expected, why_not = expected_for(model, load_config(), False, split_file)
    return compare_with_expected(report_figures, expected, why_not)


def test_the_demos_figures_are_not_compared_for_a_run_on_another_data_set(
    presets_folders, digits_dir
):
    # The digits preset trained on another folder (the issue: 44.44% was "-53.61 points,
    # outside the spread"): not the preset's data set, whatever the folder holds.
    run = load_config(None, [f"data.dataset_dir={digits_dir}"])
    model = write_state(presets_folders / "run", run.to_dict())
    comparison = scored(report(0.4444), model, digits_dir / "test.h5")
    assert comparison["compared"] is False and "difference" not in comparison
    assert comparison["why_not"] == (
        f"the expected figures are for config/digits.toml's data set, output/datasets/digits, "
        f"not {digits_dir}"
    )
    assert "not compared: the expected figures are for config/digits.toml's data set" in (
        format_comparison(comparison)
    )
    assert comparison["measured"]["rank_1"] == 0.4444  # still reported beside them
    # Nor for a run that says it trained on another kind of data in the preset's folder.
    other_kind = load_config(None, ["data.dataset=folder"])
    model = write_state(presets_folders / "folder_run", other_kind.to_dict())
    why_not = scored(report(0.97), model, "output/datasets/digits/test.h5")["why_not"]
    assert (
        why_not == "the expected figures are for config/digits.toml's digits data, not folder data"
    )


def test_the_figures_are_compared_on_a_copy_of_the_same_build_and_not_on_another(
    presets_folders,
):
    model = write_state(presets_folders / "run", load_config().to_dict())
    assert scored(report(0.98), model, "output/datasets/digits/test.h5")["compared"] is True
    copy = presets_folders / "copy"
    shutil.copytree(presets_folders / "output/datasets/digits", copy)
    assert scored(report(0.98), model, copy / "test.h5")["compared"] is True
    with h5py.File(copy / "test.h5", "a") as handle:
        handle.attrs["build_id"] = "f" * 32  # another build of a data set
    comparison = scored(report(0.98), model, copy / "test.h5")
    assert comparison["compared"] is False
    assert comparison["why_not"].startswith(f"{copy / 'test.h5'} is of build ffffffff, not of ")


def test_a_run_from_before_the_check_is_not_compared_on_data_of_another_kind(
    presets_folders,
):
    # The trap: digits built into cifar10/ and the CIFAR preset trained on them,
    # by a version that recorded no data set kind.
    shutil.move(presets_folders / "output/datasets/digits", "output/datasets/cifar10")
    saved = load_config(CONFIG_DIR / "cifar10_resnet110_paper.toml").to_dict()
    del saved["data"]["dataset"], saved["data"]["num_classes"]
    model = write_state(presets_folders / "run", saved)
    comparison = scored(report(0.97), model, "output/datasets/cifar10/test.h5")
    assert comparison["compared"] is False
    assert comparison["why_not"] == (
        "the run's expected figures are for data.dataset = 'cifar10'; "
        "output/datasets/cifar10/test.h5 holds digits data with 10 classes"
    )


def test_a_data_set_rebuilt_since_training_is_not_compared(presets_folders):
    # The checkpoint records the build it trained on; the folder now holds another.
    model = write_state(presets_folders / "run", load_config().to_dict())
    state = json.loads(model.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**state, "data_build_id": "e" * 32}))
    comparison = scored(report(0.98), model, "output/datasets/digits/test.h5")
    assert comparison["compared"] is False
    assert comparison["why_not"].endswith("not of the build eeeeeeee the run trained on")
    # A forged id (not text) is a damaged state: one line naming the file and the field.
    model.with_suffix(".json").write_text(json.dumps({**state, "data_build_id": [1]}))
    with pytest.raises(UserError, match=r"epoch_0001.json is damaged: data_build_id must be text"):
        scored(report(0.98), model, "output/datasets/digits/test.h5")
