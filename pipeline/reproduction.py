"""The reproduction report: a run's measured rank-1/rank-5 beside what its preset expects
(the paper's figure and spread, or a reference run's), with the difference. No Keras."""

import dataclasses
from pathlib import Path

from pipeline.config import CONFIG_DIR, ExpectedConfig, config_from_dict, load_config
from pipeline.errors import UserError
from pipeline.run_dir import read_state
from pipeline.run_state import config_differences

# Settings of a machine or of one run, not of the recipe a result is expected from (the
# spread of a result is over seeds; ctrl+c's --lr changes are shown on their own).
NOT_RECIPE = (
    "name", "description", "checkpoints", "expected", "data.dataset_dir", "data.storage",
    "data.shuffle_buffer", "data.workers", "training.seed", "training.rate_changes",
    "training.checkpoint_every", "training.keep_last", "training.best_metric",
    "training.tensorboard", "training.jit_compile", "training.deterministic",
    "training.distribute",
)  # fmt: skip


def expected_for(
    model_path: str | Path, config, config_given: bool, split_file: str | Path
) -> tuple[ExpectedConfig | None, str | None]:
    """What the checkpoint's run expected (its state records the config it trained with);
    else, with --config given and its data scored, that config's; else nothing (the
    default config names the demo's figures, which say nothing of another run).
    Returns the expectation and a note for the user where one was set aside."""
    trained = read_state(model_path).get("config") or {}
    if "expected" in trained:
        expected = config_from_dict(
            ExpectedConfig, trained["expected"], source=f"the state of {model_path}"
        )
        trained_data = (trained.get("data") or {}).get("dataset_dir")
        return _for_scored_data(expected, trained_data, split_file, "the run's")
    if not config_given:
        return None, None
    return _for_scored_data(config.expected, config.data.dataset_dir, split_file, "the config's")


def _for_scored_data(expected, dataset_dir, split_file, whose: str):
    """The expectation, if stated and about the data being scored (another data set's
    figures say nothing of this one: a note instead)."""
    if not expected.stated:
        return None, None
    if dataset_dir and Path(split_file).resolve().parent != Path(dataset_dir).resolve():
        return None, (
            f"{whose} expected figures are for {dataset_dir}, not "
            f"{Path(split_file).parent}: not compared"
        )
    return expected, None


def compare_with_expected(report: dict, expected: ExpectedConfig) -> dict:
    """The report's figures beside the expected ones: differences in fractions (0.01 is a
    point), and whether rank-1 falls inside the source's spread (None: it gives none)."""
    spread = (expected.rank_1_low, expected.rank_1_high)
    has_spread = spread != (0.0, 0.0)
    comparison = {
        "source": expected.source,
        "split": expected.split,
        "mode": expected.mode,
        "expected": {
            "rank_1": expected.rank_1,
            "rank_1_spread": list(spread) if has_spread else None,
            "rank_5": expected.rank_5 or None,
        },
        "measured": {"rank_1": report["rank1"], "rank_5": report["rank5"]},
    }
    if (report["split"], report["mode"]) != (expected.split, expected.mode):
        comparison["compared"] = False
        comparison["why_not"] = (
            f"the expected figures are for the {expected.split} split in {expected.mode} "
            f"mode; this is the {report['split']} split in {report['mode']} mode"
        )
        return comparison
    rank_5 = None
    if expected.rank_5 and report["rank5"] is not None:
        rank_5 = report["rank5"] - expected.rank_5
    comparison["compared"] = True
    comparison["difference"] = {"rank_1": report["rank1"] - expected.rank_1, "rank_5": rank_5}
    comparison["within_spread"] = spread[0] <= report["rank1"] <= spread[1] if has_spread else None
    return comparison


def format_comparison(comparison: dict) -> str:
    """The comparison in a few lines for the terminal."""
    expected, measured = comparison["expected"], comparison["measured"]
    lines = [f"expected ({comparison['source']}):"]
    if comparison.get("recipe_changes"):
        lines.append(
            f"  note: the run's recipe differs from {comparison['preset']}'s: "
            + "; ".join(comparison["recipe_changes"])
        )
    if not comparison["compared"]:
        return "\n".join(lines + [f"  not compared: {comparison['why_not']}"])
    spread = expected["rank_1_spread"]
    spread_text = (
        f"spread {spread[0]:.2%} to {spread[1]:.2%}" if spread else "one run, no spread given"
    )
    if comparison["within_spread"] is None:
        verdict = ""
    else:
        verdict = ", inside the spread" if comparison["within_spread"] else ", outside the spread"
    lines.append(
        f"  rank-1 {expected['rank_1']:.2%} ({spread_text}); measured {measured['rank_1']:.2%}: "
        f"{_points(comparison['difference']['rank_1'])}{verdict}"
    )
    if comparison["difference"]["rank_5"] is not None:
        lines.append(
            f"  rank-5 {expected['rank_5']:.2%}; measured {measured['rank_5']:.2%}: "
            f"{_points(comparison['difference']['rank_5'])}"
        )
    return "\n".join(lines)


def _points(difference: float) -> str:
    points = round(difference * 100, 2) or 0.0  # no "-0.00"
    return f"{points:+.2f} points"


def recipe_changes(model_path: str | Path) -> tuple[Path | None, list[str]]:
    """The preset the checkpoint's run was made from (the file in config/ with its name
    and expected figures) and how the run's recipe differs from it: an expectation holds
    for the preset's recipe, not for 10 epochs of another schedule."""
    trained = read_state(model_path).get("config") or {}
    if not trained.get("expected"):
        return None, []
    for path in sorted(Path(CONFIG_DIR).glob("*.toml")):
        try:
            preset = load_config(path)
        except UserError:
            continue
        same_expectation = dataclasses.asdict(preset.expected) == trained["expected"]
        if preset.name == trained.get("name") and same_expectation:
            changes = config_differences(preset.to_dict(), trained)
            shown = path.relative_to(Path(CONFIG_DIR).parent)
            return shown, [line for line in changes if not _run_setting(line)]
    return None, []


def _run_setting(line: str) -> bool:
    key = line.split(":", 1)[0]
    return any(key == name or key.startswith(f"{name}.") for name in NOT_RECIPE)
