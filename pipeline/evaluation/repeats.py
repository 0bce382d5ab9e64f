"""One config trained with several seeds: the spread of their test figures, beside the
preset's [expected] ones (He et al. report ResNet-110 on CIFAR-10 as the best of 5 runs
and mean +- std, so a single run says little about a reproduction).

No framework here: the figures come from each run's own evaluation report.
"""

import math
import statistics

from pipeline.config import ExpectedConfig
from pipeline.runs.json_files import write_json_atomically

# What pipeline.api.repeat_runs writes into the folder of the seeds' run directories.
SUMMARY_FILE = "repeats.json"


def summarize_repeats(seed_reports: dict[int, dict], expected: ExpectedConfig | None) -> dict:
    """Mean, sample standard deviation, best and worst of rank-1 and rank-5 over the
    seeds' reports ({seed: report of pipeline.api.evaluate}), with `expected` beside
    (None, or a preset that states no rank-1: nothing to compare with)."""
    summary = {
        "seeds": sorted(seed_reports),
        "runs": {
            str(seed): {"rank_1": report["rank1"], "rank_5": report["rank5"]}
            for seed, report in sorted(seed_reports.items())
        },
    }
    for key, name in (("rank1", "rank_1"), ("rank5", "rank_5")):
        values = [report[key] for report in seed_reports.values() if report[key] is not None]
        summary[name] = _spread(values) if values else None
    if expected is not None and expected.rank_1:
        summary["expected"] = _expected(expected, summary["rank_1"])
    return summary


def _spread(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        # The sample standard deviation (n - 1), as papers report over a few runs; 0 for one.
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "best": max(values),
        "worst": min(values),
        "count": len(values),
    }


def _expected(expected: ExpectedConfig, measured: dict) -> dict:
    spread = (expected.rank_1_low, expected.rank_1_high)
    has_spread = spread != (0.0, 0.0)
    return {
        "source": expected.source,
        "rank_1": expected.rank_1,
        "rank_1_spread": list(spread) if has_spread else None,
        "rank_5": expected.rank_5 or None,
        "mean_difference": measured["mean"] - expected.rank_1,
        "mean_within_spread": spread[0] <= measured["mean"] <= spread[1] if has_spread else None,
    }


def format_repeats(summary: dict) -> str:
    """The summary as lines of text: each seed, then mean +- std, best, and the
    expected figures."""
    lines = []
    for seed, run in summary["runs"].items():
        rank5 = f", rank-5 {_percent(run['rank_5'])}" if run["rank_5"] is not None else ""
        lines.append(f"seed {seed}: rank-1 {_percent(run['rank_1'])}{rank5}")
    for name, shown in (("rank_1", "rank-1"), ("rank_5", "rank-5")):
        spread = summary[name]
        if spread:
            lines.append(
                f"{shown} over {spread['count']} seeds: mean {_percent(spread['mean'])} +- "
                f"{spread['std'] * 100:.2f} (sample std), best {_percent(spread['best'])}, "
                f"worst {_percent(spread['worst'])}"
            )
    expected = summary.get("expected")
    if expected:
        shown_spread = ""
        if expected["rank_1_spread"]:
            low, high = expected["rank_1_spread"]
            inside = "inside" if expected["mean_within_spread"] else "outside"
            shown_spread = f" (spread {_percent(low)}-{_percent(high)}: the mean is {inside})"
        lines.append(
            f"expected rank-1 {_percent(expected['rank_1'])}{shown_spread}; the mean differs by "
            f"{expected['mean_difference'] * 100:+.2f} points ({expected['source']})"
        )
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:.2f}%"


def write_repeats(summary: dict, folder) -> None:
    from pathlib import Path

    write_json_atomically(Path(folder) / SUMMARY_FILE, summary)
