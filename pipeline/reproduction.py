"""The reproduction report: a run's measured rank-1/rank-5 beside what its preset expects
(the paper's figure and spread, or a reference run's), with the difference. No Keras."""

from pathlib import Path

from pipeline.config import ExpectedConfig, config_from_dict
from pipeline.run_dir import read_state


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
        return (expected if expected.stated else None), None
    if not config_given or not config.expected.stated:
        return None, None
    if Path(split_file).parent != Path(config.data.dataset_dir):
        return None, (
            f"the config's expected figures are for {config.data.dataset_dir}, not "
            f"{Path(split_file).parent}: not compared"
        )
    return config.expected, None


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
    return f"{difference * 100:+.2f} points"
