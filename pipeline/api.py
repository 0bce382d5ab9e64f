"""The pipeline from Python: build a data set, train (with your own Keras callbacks),
evaluate. The scripts (build_dataset.py, train.py, train_decay.py, rank_accuracy.py)
are thin wrappers over these functions, so a call behaves as the command does: the
same run directory, the same ctrl+c and resume, the same one-line refusals (raised
as pipeline.errors.UserError).

    import pipeline
    pipeline.build_dataset("digits")
    result = pipeline.train("config/digits.toml", "output/run", callbacks=[my_callback])
    report = pipeline.evaluate(run_dir="output/run")

Importing this module loads no framework: Keras loads when training or evaluation
begins, after what the run directory and the config decide has been checked.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pipeline.advice import Invocation
from pipeline.config import ExperimentConfig, config_from_values, load_config
from pipeline.errors import UserError
from pipeline.framework import avoid_onednn_crash, check_backend, load_keras
from pipeline.training.run_config import (
    config_for_invocation,
    latest_position,
    overrides_of,
    run_dir_of,
    unused_run_dir,
    with_schedule,
)
from pipeline.training.start import TrainingResult
from pipeline.training.start import train as train_from_config

__all__ = [
    "TrainingResult",
    "build_dataset",
    "evaluate",
    "find_lr",
    "load_config",
    "repeat_runs",
    "train",
]

# find_lr.py's defaults: the range and length of the test, and where it writes.
LR_RANGE_DEFAULTS = {"min_rate": 1e-6, "max_rate": 1.0, "batches": 200}
LR_RANGE_OUTPUT = "output/lr_range"


def build_dataset(name: str, *, output=None, seed: int = 0, overwrite=False, **options) -> dict:
    """Build data set `name` (digits, cifar10, cifar100, tiny_imagenet, caltech256,
    folder) into `output` (default output/datasets/<name>), as build_dataset.py does;
    `options` are its options (source, val_labels, ...). Returns the build's summary."""
    # The builders (scikit-learn, OpenCV) load here, not with the API: a refused
    # training command answers without them.
    from pipeline.datasets.registry import build_dataset as build

    return build(name, output=output, seed=seed, overwrite=overwrite, **options)


def train(
    config: ExperimentConfig | str | Path | None = None,
    run_dir: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    callbacks: Sequence = (),
    resume: bool = False,
    start_epoch: int | None = None,
    model: str | Path | None = None,
    lr: float | None = None,
    epochs: int | None = None,
    overwrite: bool = False,
    script: str = "train.py",
    schedule: str | None = None,
) -> TrainingResult:
    """Train, or resume, a run in `run_dir`, as train.py does; returns how it ended.

    `config`: a loaded ExperimentConfig, a preset file, or None (the default preset; a
    resumed run continues with its own config.json). `overrides` are --set values
    ("training.batch_size=64"), `epochs` is --epochs, `lr` is --lr, and `resume`,
    `start_epoch`, `model` and `overwrite` are the options of the same names.
    `callbacks` are Keras callbacks added to the fit: they see Keras' epoch numbers
    (0-based, continued across a resume), once per epoch also when a ctrl+c cut an
    epoch in two. The result says how the run `ended` ("finished", "interrupted",
    "diverged"), with its `final_checkpoint` and `history`.
    `script` and `schedule` are the command a refusal advises (train_decay.py always
    trains with polynomial decay).
    """
    invocation = Invocation(
        script=script,
        checkpoints=str(run_dir) if run_dir is not None else None,
        config=None if isinstance(config, ExperimentConfig | None) else str(config),
        overrides=tuple(overrides),
        resume=resume,
        start_epoch=start_epoch,
        model=None if model is None else str(model),
        epochs=epochs,
        lr=lr,
        overwrite=overwrite,
    )
    if isinstance(config, ExperimentConfig):
        chosen = _with_overrides(config, overrides_of(invocation))
        source = "the config given"
        if schedule:
            chosen = with_schedule(chosen, schedule, invocation, chosen=True)
        invocation = dataclasses.replace(invocation, checkpoints=str(run_dir or chosen.checkpoints))
    else:
        # Advice names the run directory even where the config chose it.
        invocation = dataclasses.replace(invocation, checkpoints=str(run_dir_of(invocation)))
        chosen, source = config_for_invocation(invocation, schedule)
    return train_from_config(
        chosen,
        run_dir=Path(invocation.checkpoints),
        model_path=invocation.model,
        start_epoch=start_epoch,
        resume=resume,
        learning_rate=lr,
        overwrite=overwrite,
        callbacks=tuple(callbacks),
        invocation=invocation,
        config_source=source,
        config_given=True if isinstance(config, ExperimentConfig) else None,
    )


def _with_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """A loaded config with `overrides` applied, checked as a preset file is."""
    if not overrides:
        return config
    return config_from_values(config.to_dict(), list(overrides), source="the config given")


def evaluate(
    config: ExperimentConfig | str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    model: str | Path | None = None,
    dataset: str | Path | None = None,
    split: str | None = None,
    mode: str = "center",
    scales: Sequence[int] = (),
    batch_size: int = 256,
    overrides: Sequence[str] = (),
    announce=None,
) -> dict:
    """Rank-1/rank-5 of a checkpoint over every sample of a split, as rank_accuracy.py
    computes them: `model` names the checkpoint, else the latest of `run_dir` (else of
    the config's run directory); the split is the test split of the data the model was
    trained on, unless `dataset`/`split` name another. Returns the report: `rank1`,
    `rank5`, `per_class`, the fingerprints, `notes` on the choices made, and
    `reproduction` (measured against the preset's [expected] figures) where the preset
    states them. `announce`, if given, is called with each note before the model loads
    (rank_accuracy.py prints them)."""
    from pipeline.evaluation.reproduction import compare_with_expected, expected_for, recipe_changes
    from pipeline.evaluation.target import evaluation_target

    check_backend()  # an environment error first, before any file is looked at
    config_path = None if isinstance(config, ExperimentConfig | None) else str(config)
    if isinstance(config, ExperimentConfig):
        loaded = _with_overrides(config, overrides)
    else:
        loaded = load_config(config, overrides)
    target = evaluation_target(
        loaded,
        model=model,
        checkpoints=run_dir,
        dataset=dataset,
        split=split,
        # Without a checkpoint: the training command for the same --config and --set.
        training=Invocation(config=config_path, overrides=tuple(overrides)),
    )
    for note in target.notes if announce else ():
        announce(note)
    load_keras()
    from pipeline.evaluation.rank_accuracy import evaluate as evaluate_split

    report = evaluate_split(
        target.model_path, target.split_file, batch_size=batch_size, mode=mode, scales=scales
    )
    report["notes"] = list(target.notes)
    expected, why_not = expected_for(
        target.model_path, loaded, config is not None, target.split_file
    )
    if expected is not None:
        # The run's preset states what it should reach: the measured figures beside it,
        # or, for another data set or split, why not.
        report["reproduction"] = compare_with_expected(report, expected, why_not)
        preset, changes = recipe_changes(target.model_path)
        if preset is not None:
            report["reproduction"] |= {"preset": str(preset), "recipe_changes": changes}
    return report


def find_lr(
    config: ExperimentConfig | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    min_rate: float = LR_RANGE_DEFAULTS["min_rate"],
    max_rate: float = LR_RANGE_DEFAULTS["max_rate"],
    batches: int = LR_RANGE_DEFAULTS["batches"],
    output: str | Path = LR_RANGE_OUTPUT,
    checkpoints: str | Path | None = None,
) -> dict:
    """The learning-rate range test, as find_lr.py runs it: a copy of the config's network
    trained for up to `batches` batches at rates rising from `min_rate` to `max_rate`;
    writes lr_range.png and lr_range.json into `output` (never a run directory) and
    returns what the JSON holds: `suggested_rate`, and the `command` that starts a run
    with it (in `checkpoints`, where given)."""
    from pipeline.training.lr_range import exponential_rates

    check_backend()
    exponential_rates(min_rate, max_rate, batches)  # a bad range is refused before Keras
    config_path = None if isinstance(config, ExperimentConfig | None) else str(config)
    if isinstance(config, ExperimentConfig):
        loaded = _with_overrides(config, overrides)
    else:
        loaded = load_config(config, overrides)

    def command_for(rate: float) -> str:
        with_rate = (*overrides, f"training.learning_rate={rate:g}")
        run_dir = checkpoints if checkpoints is not None else unused_run_dir(loaded, rate)
        return Invocation(
            config=config_path, checkpoints=None if run_dir is None else str(run_dir),
            overrides=with_rate,
        ).command()  # fmt: skip

    onednn = avoid_onednn_crash(min(loaded.model.network().filters[1:]))
    load_keras()
    from pipeline.training.lr_range_fit import find_learning_rate

    result = find_learning_rate(
        loaded, min_rate=min_rate, max_rate=max_rate, batches=batches, output_dir=output,
        command_for=command_for,
    )  # fmt: skip
    return {**result, "notes": [onednn] if onednn else []}


def seed_run_dir(checkpoints, seed: int) -> Path:
    """The run directory of one seed of repeat_runs."""
    return Path(checkpoints) / f"seed_{seed}"


def repeat_runs(
    config: ExperimentConfig | str | Path | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    checkpoints: str | Path,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    callbacks: Sequence = (),
) -> dict:
    """Train `config` once per seed, each an ordinary run in `checkpoints`/seed_<n> (ctrl+c,
    --resume, rewinds and rank_accuracy.py work on it), then score each on its test split
    and summarize: mean, sample std, best and worst rank-1/rank-5 beside the preset's
    [expected] figures, and compare_runs' picture of all of them, in `checkpoints`.

    Called again, it goes on where it stopped: a finished seed is kept, an interrupted
    one resumed (with its own config.json), a missing one started. Returns the summary
    with `ended` "finished", or how the seed that stopped it `ended`."""
    from pipeline.evaluation.repeats import summarize_repeats, write_repeats
    from pipeline.evaluation.run_comparison import compare_runs

    seeds = [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"repeat_runs needs distinct seeds, got {seeds}")
    if isinstance(config, ExperimentConfig):
        loaded = _with_overrides(config, overrides)
    else:
        loaded = load_config(config, overrides)
    target = epochs if epochs is not None else loaded.training.epochs
    for seed in seeds:
        run_dir = seed_run_dir(checkpoints, seed)
        position = latest_position(run_dir)
        if position is not None and position[1] == 0 and position[0] >= target:
            continue  # trained already
        if position is None:
            with_seed = (*overrides, f"training.seed={seed}")
            result = train(config, run_dir, overrides=with_seed, epochs=epochs, callbacks=callbacks)
        else:
            result = train(None, run_dir, resume=True, epochs=epochs, callbacks=callbacks)
        if result.ended != "finished":
            return {"ended": result.ended, "seed": seed, "run_dir": str(run_dir)}
    reports = {seed: evaluate(run_dir=seed_run_dir(checkpoints, seed)) for seed in seeds}
    # The preset's figures count only where each run was scored as they were measured.
    comparable = all(report.get("reproduction", {}).get("compared") for report in reports.values())
    summary = summarize_repeats(reports, loaded.expected if comparable else None)
    run_dirs = [seed_run_dir(checkpoints, seed) for seed in seeds]
    _rows, table, picture, _data = compare_runs(run_dirs, Path(checkpoints) / "comparison")
    summary |= {"picture": str(picture), "table": table, "ended": "finished"}
    write_repeats(summary, checkpoints)
    return summary
