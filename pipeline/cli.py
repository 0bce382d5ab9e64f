"""Command-line pieces shared by the scripts: config options, and the training command."""

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

from pipeline.advice import Invocation
from pipeline.config import (
    DEFAULT_CONFIG_PATH,
    ExperimentConfig,
    config_from_values,
    load_config,
)
from pipeline.errors import (
    DIVERGED_EXIT_CODE,
    INTERRUPTED_EXIT_CODE,
    TERMINATED_EXIT_CODE,
    OneLineArgumentParser,
    UserError,
)
from pipeline.framework import load_keras
from pipeline.runs.run_dir import CONFIG_FILE, latest_checkpoint, read_state
from pipeline.training.cluster import cluster_in_environment, own_run_dir


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config FILE and repeatable --set section.key=value overrides."""
    parser.add_argument(
        "--config",
        default=None,
        help=f"experiment preset, a TOML file (default: {DEFAULT_CONFIG_PATH.name} in config/)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set training.batch_size=128 (repeatable)",
    )


def config_from_arguments(args: argparse.Namespace, *extra_overrides: str) -> ExperimentConfig:
    """The preset named by --config with --set overrides, then `extra_overrides`, applied."""
    return load_config(args.config, [*args.overrides, *extra_overrides])


def training_parser(description: str) -> OneLineArgumentParser:
    """The options of train.py and train_decay.py."""
    parser = OneLineArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", help="run directory (default: from the config)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--model", help="checkpoint to resume from")
    parser.add_argument("--start_epoch", type=int, help="resume from the epoch-N checkpoint")
    parser.add_argument("--lr", type=float, help="learning rate to continue with")
    parser.add_argument("--epochs", type=int, help="total number of epochs (training.epochs)")
    parser.add_argument("--overwrite", action="store_true", help="start over in a used run dir")
    add_config_arguments(parser)
    return parser


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


def resumed_config(args, run_dir: Path, overrides) -> tuple[ExperimentConfig, str]:
    """The config a resumed run continues with, and where it came from: --config if
    given, else the run directory's config.json, else the config saved with the
    checkpoint named by --model or resumed from (a run forked into a new directory),
    else the default preset."""
    if args.config is None:
        saved = _saved_config(run_dir)
        if saved is not None:
            return load_config(saved, overrides), str(saved)
        checkpoint = Path(args.model) if args.model else latest_checkpoint(run_dir)
        if checkpoint is not None and checkpoint.is_file():
            values = read_state(checkpoint).get("config")
            if values:
                source = f"{checkpoint}'s state"
                return config_from_values(values, overrides, source=source), source
    return load_config(args.config, overrides), str(args.config or DEFAULT_CONFIG_PATH)


def _with_schedule(config: ExperimentConfig, schedule: str, invocation: Invocation, chosen: bool):
    """The config with `schedule`, the one train_decay.py always trains with.

    It replaces a constant schedule, and the default preset's (which suits train.py);
    another schedule the user chose (with --config, --set, or a run being resumed) is a
    one-line error: that run is train.py's.
    """
    training, script = config.training, invocation.script
    if chosen and training.schedule not in ("constant", schedule):
        with_schedule = (*invocation.overrides, f"training.schedule={schedule}")
        raise UserError(
            f"{script} always trains with {schedule} decay, but this config names "
            f"training.schedule = {training.schedule!r}: train it with train.py instead: "
            f"{invocation.command(script='train.py')}; or with {schedule} decay: "
            f"{invocation.command(overrides=with_schedule)}"
        )
    if training.schedule != schedule:
        print(f"{script}: training.schedule {training.schedule!r} replaced by {schedule!r}")
    return dataclasses.replace(config, training=dataclasses.replace(training, schedule=schedule))


def train_from_command_line(argv, *, script: str, schedule: str | None, description: str) -> int:
    """Parse the training options and train. Returns the exit code: 0; 130 after ctrl+c,
    143 after SIGTERM (the position saved either way); 3 when the loss stopped being finite.

    Resuming without --config continues with the run directory's own config.json.
    `schedule` is the schedule the script always trains with (train_decay.py: polynomial).
    """
    args = training_parser(description).parse_args(argv)
    run_dir = Path(args.checkpoints or load_config(args.config, args.overrides).checkpoints)
    # Advice names the run directory even where the config chose it.
    invocation = dataclasses.replace(
        Invocation.from_arguments(script, args), checkpoints=str(run_dir)
    )
    extra = [f"training.epochs={args.epochs}"] if args.epochs is not None else []
    overrides = [*args.overrides, *extra]
    resuming = args.resume or args.model or args.start_epoch
    if resuming:
        config, source = resumed_config(args, run_dir, overrides)
    else:
        config, source = (
            load_config(args.config, overrides),
            str(args.config or DEFAULT_CONFIG_PATH),
        )
    if schedule:
        chosen = bool(args.config or resuming) or any(
            item.partition("=")[0].strip() == "training.schedule" for item in args.overrides
        )
        config = _with_schedule(config, schedule, invocation, chosen)
        training = config.training
        print(
            f"{script}: {schedule} decay to 0 over {training.epochs} epochs "
            f"(power {training.decay_power:g})"
        )
    # Imported only now, so that --help and option errors answer without loading Keras.
    load_keras()
    from pipeline.training.engine import train

    result = train(
        config,
        run_dir=run_dir,
        model_path=args.model,
        start_epoch=args.start_epoch,
        resume=args.resume,
        learning_rate=args.lr,
        overwrite=args.overwrite,
        invocation=invocation,
        config_source=source,
    )
    if result.interrupted:
        if config.training.distribute == "multiworker":
            print("(on every worker, with the same cluster variables as this run)")
        return TERMINATED_EXIT_CODE if result.interrupted.by == "SIGTERM" else INTERRUPTED_EXIT_CODE
    if result.divergence:
        print(f"error: {result.divergence}", file=sys.stderr)
        return DIVERGED_EXIT_CODE
    print(f"final checkpoint: {result.final_checkpoint}")
    return 0
