"""The reproduction report: measured figures beside a preset's expected ones (no Keras)."""

import json

import pytest

from pipeline.config import ExpectedConfig, load_config
from pipeline.errors import UserError
from pipeline.reproduction import compare_with_expected, expected_for, format_comparison

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
    # Scored on other data (--dataset), the run's figures are not compared.
    expected, note = expected_for(model, digits, False, "output/datasets/digits/test.h5")
    assert expected is None
    assert note == (
        "the run's expected figures are for output/datasets/cifar10, not "
        "output/datasets/digits: not compared"
    )


def test_without_a_record_only_an_explicit_config_for_the_scored_data_counts(tmp_path):
    digits = load_config()
    old_run = write_state(tmp_path, {"data": {}})  # a run from before [expected] existed
    assert expected_for(old_run, digits, False, "output/datasets/digits/test.h5") == (None, None)
    given = expected_for(old_run, digits, True, "output/datasets/digits/test.h5")
    assert given == (digits.expected, None)
    expected, note = expected_for(old_run, digits, True, "/elsewhere/test.h5")
    assert expected is None and "not compared" in note


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
    from pipeline.config import CONFIG_DIR

    for path in sorted(CONFIG_DIR.glob("*.toml")):
        expected = load_config(path).expected
        assert expected.stated and expected.source, path.name


def test_a_run_that_changed_its_presets_recipe_says_how(tmp_path):
    from pathlib import Path

    from pipeline.reproduction import recipe_changes

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
