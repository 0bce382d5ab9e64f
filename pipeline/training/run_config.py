"""The config a training command trains with, and where it came from.

A fresh start takes --config (or the default preset) with --set and --epochs applied.
A resumed run without --config continues with its run directory's config.json (a
worker's own copy in a multi-worker run), else with the config saved in the
checkpoint it resumes from. train_decay.py's schedule replaces a constant one.
No framework is loaded here.
"""

import contextlib
import dataclasses
from pathlib import Path

from pipeline.advice import Invocation
from pipeline.config import (
    DEFAULT_CONFIG_PATH,
    ExperimentConfig,
    config_from_values,
    load_config,
)
from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.run_dir import CONFIG_FILE
from pipeline.runs.run_reading import latest_checkpoint
from pipeline.training.cluster import cluster_in_environment, own_run_dir


def run_dir_of(invocation: Invocation) -> Path:
    """The run directory: --checkpoints, else the one the config names."""
    if invocation.checkpoints:
        return Path(invocation.checkpoints)
    return Path(load_config(invocation.config, invocation.overrides).checkpoints)


def overrides_of(invocation: Invocation) -> list[str]:
    """The --set values of `invocation`, then --epochs as the override it stands for."""
    extra = [f"training.epochs={invocation.epochs}"] if invocation.epochs is not None else []
    return [*invocation.overrides, *extra]


def config_for_invocation(
    invocation: Invocation, schedule: str | None = None
) -> tuple[ExperimentConfig, str]:
    """The config `invocation` trains with, and where it came from (for errors).
    `schedule` is the one the script always trains with (train_decay.py: polynomial)."""
    run_dir = run_dir_of(invocation)
    overrides = overrides_of(invocation)
    resuming = bool(invocation.resume or invocation.model or invocation.start_epoch)
    if resuming:
        config, source = _resumed_config(invocation, run_dir, overrides)
    else:
        config = load_config(invocation.config, overrides)
        source = str(invocation.config or DEFAULT_CONFIG_PATH)
    if schedule:
        chosen = bool(invocation.config or resuming) or any(
            item.partition("=")[0].strip() == "training.schedule" for item in invocation.overrides
        )
        config = with_schedule(config, schedule, invocation, chosen)
        training = config.training
        print(
            f"{invocation.script}: {schedule} decay to 0 over {training.epochs} epochs "
            f"(power {training.decay_power:g})"
        )
    return config, source


def _saved_config(run_dir: Path) -> Path | None:
    """The config.json a resumed run continues with: a multi-worker run's non-chief
    workers read their own copy, since their machine may not see the chief's."""
    candidates = [run_dir / CONFIG_FILE]
    if cluster_in_environment():
        # A cluster description this pipeline cannot read (another platform's
        # TF_CONFIG) matters only to a multi-worker run, which reports it itself.
        with contextlib.suppress(UserError):
            candidates.insert(0, own_run_dir(run_dir) / CONFIG_FILE)
    return next((path for path in candidates if path.is_file()), None)


def _resumed_config(invocation: Invocation, run_dir: Path, overrides) -> tuple:
    """The config a resumed run continues with, and where it came from: --config if
    given, else the run directory's config.json, else the config saved with the
    checkpoint named by --model or resumed from (a run forked into a new directory),
    else the default preset."""
    if invocation.config is None:
        saved = _saved_config(run_dir)
        if saved is not None:
            return load_config(saved, overrides), str(saved)
        model = invocation.model
        checkpoint = Path(model) if model else latest_checkpoint(run_dir)
        if checkpoint is not None and checkpoint.is_file():
            values = read_state(checkpoint).get("config")
            if values:
                source = f"{checkpoint}'s state"
                return config_from_values(values, overrides, source=source), source
    config = load_config(invocation.config, overrides)
    return config, str(invocation.config or DEFAULT_CONFIG_PATH)


def with_schedule(config: ExperimentConfig, schedule: str, invocation: Invocation, chosen: bool):
    """The config with `schedule`, the one train_decay.py always trains with.

    It replaces a constant schedule, and the default preset's (which suits train.py);
    another schedule the user chose (with --config, --set, or a run being resumed) is a
    one-line error: that run is train.py's.
    """
    training, script = config.training, invocation.script
    if chosen and training.schedule not in ("constant", schedule):
        with_it = (*invocation.overrides, f"training.schedule={schedule}")
        raise UserError(
            f"{script} always trains with {schedule} decay, but this config names "
            f"training.schedule = {training.schedule!r}: train it with train.py instead: "
            f"{invocation.command(script='train.py')}; or with {schedule} decay: "
            f"{invocation.command(overrides=with_it)}"
        )
    if training.schedule != schedule:
        print(f"{script}: training.schedule {training.schedule!r} replaced by {schedule!r}")
    return dataclasses.replace(config, training=dataclasses.replace(training, schedule=schedule))


def latest_position(run_dir: Path) -> tuple[int, int] | None:
    """(epochs done, batches of the next epoch done) at the run's latest checkpoint; None
    where it has none. Damaged run files are one-line errors naming them."""
    if not Path(run_dir).is_dir():
        return None
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return None
    state = read_state(checkpoint)
    return int(state["epoch"]), int(state.get("batch", 0))


def unused_run_dir(config: ExperimentConfig, rate: float) -> Path | None:
    """Where the command find_lr prints trains when no run directory was given: the
    config's own (None: the command need not name it), or, when a run is there already
    (the demo's, say), a sibling named after the rate, which the command would
    otherwise be refused."""
    own = Path(config.checkpoints)
    if not own.exists() or (own.is_dir() and not any(own.iterdir())):
        return None
    return own.with_name(f"{own.name}_lr{rate:g}")
