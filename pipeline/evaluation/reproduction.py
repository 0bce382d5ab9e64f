"""The reproduction report: a run's measured rank-1/rank-5 beside what its preset expects
(the paper's figure and spread, or a reference run's), with the difference. No Keras."""

import dataclasses
from pathlib import Path

from pipeline.config import (
    CONFIG_DIR,
    ExpectedConfig,
    ExperimentConfig,
    config_from_dict,
    load_config,
)
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import SplitInfo, read_split_info
from pipeline.datasets.identity import describe_contents, stated_differences
from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.start_config import config_differences

# Settings of a machine or of one run, not of the recipe a result is expected from (the
# spread of a result is over seeds; ctrl+c's --lr changes are shown on their own; the data
# set, which the comparison itself checks: why_not_comparable).
NOT_RECIPE = (
    "name", "description", "checkpoints", "expected", "data.dataset_dir", "data.dataset",
    "data.num_classes", "data.storage", "data.shuffle_buffer", "data.workers",
    "training.seed", "training.rate_changes",
    "training.checkpoint_every", "training.keep_last", "training.best_metric",
    "training.tensorboard", "training.jit_compile", "training.deterministic",
    "training.distribute",
)  # fmt: skip


def expected_for(
    model_path: str | Path, config, config_given: bool, split_file: str | Path
) -> tuple[ExpectedConfig | None, str | None]:
    """What the checkpoint's run expected (its state records the config it trained with);
    else, with --config given, that config's; else nothing (the default config names the
    demo's figures, which say nothing of another run). Returns the expectation and, where
    it is not about this checkpoint on this data, why it is not compared (one line)."""
    state = read_state(model_path)
    trained = state.get("config") or {}
    # The build the run trained on, as its checkpoint recorded it (a folder rebuilt since
    # holds another build).
    build = state.get("data_build_id")
    build = build if isinstance(build, str) and build else None
    if "expected" in trained:
        expected = config_from_dict(
            ExpectedConfig, trained["expected"], source=f"the state of {model_path}"
        )
        run, whose = trained, "the run's"
    elif config_given:
        expected, run, whose = config.expected, config.to_dict(), "the config's"
    else:
        return None, None
    if not expected.stated:
        return None, None
    return expected, why_not_comparable(run, split_file, whose, build)


def why_not_comparable(
    run: dict, split_file: str | Path, whose: str, trained_build: str | None = None
) -> str | None:
    """Why figures expected for `run` (a saved config) say nothing of scoring `split_file`
    (None: they do). A preset's figures hold for a run on the preset's data set, scored
    on the data it trained on: not for the demo's recipe trained on other data."""
    data = run.get("data") or {}
    preset = preset_of(run)
    scored = _split_info(split_file)
    return (
        _not_the_presets_data(preset, data)
        or _not_the_trained_data(data, split_file, scored, whose, trained_build)
        or _not_the_stated_data(preset, data, split_file, scored, whose)
    )


def _not_the_presets_data(preset, data: dict) -> str | None:
    """The run's data set (its folder, or its kind) is not its preset's."""
    if preset is None:
        return None
    path, stated = preset[0], preset[1].data
    if data.get("dataset_dir") and not _same_folder(data["dataset_dir"], stated.dataset_dir):
        return (
            f"the expected figures are for {path}'s data set, {stated.dataset_dir}, "
            f"not {data['dataset_dir']}"
        )
    kind = data.get("dataset")
    if kind and stated.dataset and kind != stated.dataset:
        return f"the expected figures are for {path}'s {stated.dataset} data, not {kind} data"
    return None


def _not_the_trained_data(data: dict, split_file, scored, whose: str, trained_build=None):
    """The scored split is not of the data the run trained on: another build (the one the
    checkpoint recorded, else that of the train split there now), or (where either build
    is unknown) another folder."""
    dataset_dir = data.get("dataset_dir")
    if not dataset_dir:
        return None
    train_file = split_path(dataset_dir, data.get("train_split", "train"))
    if trained_build is None:
        trained = _split_info(train_file)
        trained_build = trained.build_id if trained else None
    if scored and scored.build_id and trained_build:
        if scored.build_id == trained_build:
            return None
        return (
            f"{split_file} is of build {scored.build_id[:8]}, not of the build "
            f"{trained_build[:8]} the run trained on"
        )
    if _same_folder(Path(split_file).parent, dataset_dir):
        return None
    return f"{whose} expected figures are for {dataset_dir}, not {Path(split_file).parent}"


def _not_the_stated_data(preset, data: dict, split_file, scored, whose: str) -> str | None:
    """The scored split holds another kind or class count than the run's config (or else
    its preset) states: a run trained before training checked it may hold anything."""
    if scored is None:
        return None
    preset_data = preset[1].data if preset else None
    kind = data.get("dataset") or (preset_data.dataset if preset_data else "")
    num_classes = data.get("num_classes") or (preset_data.num_classes if preset_data else 0)
    differences = stated_differences(kind, num_classes, scored)
    if not differences:
        return None
    said = ", ".join(f"{key} = {stated!r}" for key, (stated, _held) in differences.items())
    held = describe_contents(scored)
    return f"{whose} expected figures are for {said}; {split_file} holds {held}"


def _split_info(path) -> SplitInfo | None:
    """The split's metadata; None where it is not there or not readable (then the
    comparison falls back on folders)."""
    if not Path(path).is_file():
        return None
    try:
        return read_split_info(path)
    except UserError:
        return None


def _same_folder(first, second) -> bool:
    return Path(first).resolve() == Path(second).resolve()


def compare_with_expected(report: dict, expected: ExpectedConfig, why_not: str | None = None):
    """The report's figures beside the expected ones: differences in fractions (0.01 is a
    point), and whether rank-1 falls inside the source's spread (None: it gives none).
    Not compared (`compared` false, `why_not` saying why) where `why_not` is given, or
    the split or mode differs from the expected one's."""
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
    if why_not is None and (report["split"], report["mode"]) != (expected.split, expected.mode):
        why_not = (
            f"the expected figures are for the {expected.split} split in {expected.mode} "
            f"mode; this is the {report['split']} split in {report['mode']} mode"
        )
    if why_not is not None:
        comparison["compared"] = False
        comparison["why_not"] = why_not
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
    found = preset_of(trained)
    if found is None:
        return None, []
    path, preset = found
    changes = config_differences(preset.to_dict(), trained)
    return path, [line for line in changes if not _run_setting(line)]


def preset_of(run: dict) -> tuple[Path, ExperimentConfig] | None:
    """The preset in config/ a run (a saved config) was made from: the file with its name
    and expected figures, shown relative to the repository (config/digits.toml)."""
    if not run.get("expected"):
        return None
    for path in sorted(Path(CONFIG_DIR).glob("*.toml")):
        try:
            preset = load_config(path)
        except UserError:
            continue
        same_expectation = dataclasses.asdict(preset.expected) == run["expected"]
        if preset.name == run.get("name") and same_expectation:
            return path.relative_to(Path(CONFIG_DIR).parent), preset
    return None


def _run_setting(line: str) -> bool:
    key = line.split(":", 1)[0]
    return any(key == name or key.startswith(f"{name}.") for name in NOT_RECIPE)
