"""Command-line pieces shared by the scripts: config options, and the training command."""

import argparse
import contextlib
import dataclasses
from pathlib import Path

from pipeline.cluster import cluster_in_environment, own_run_dir
from pipeline.config import DEFAULT_CONFIG_PATH, ExperimentConfig, load_config
from pipeline.errors import INTERRUPTED_EXIT_CODE, OneLineArgumentParser, UserError
from pipeline.run_dir import CONFIG_FILE


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


def train_from_command_line(argv, *, script: str, schedule: str | None, description: str) -> int:
    """Parse the training options and train. Returns the exit code: 0, or 130 after ctrl+c.

    Resuming without --config continues with the run directory's own config.json.
    `schedule` replaces a constant schedule (train_decay.py: polynomial).
    """
    args = training_parser(description).parse_args(argv)
    run_dir = Path(args.checkpoints or load_config(args.config, args.overrides).checkpoints)
    resuming = args.resume or args.model or args.start_epoch
    config_path = args.config
    if config_path is None and resuming:
        config_path = _saved_config(run_dir)
    extra = [f"training.epochs={args.epochs}"] if args.epochs is not None else []
    config = load_config(config_path, [*args.overrides, *extra])
    if schedule and config.training.schedule == "constant":
        config = dataclasses.replace(
            config, training=dataclasses.replace(config.training, schedule=schedule)
        )
    # Imported only now, so that --help and option errors answer without loading Keras.
    from pipeline.training import train

    result = train(
        config,
        run_dir=run_dir,
        model_path=args.model,
        start_epoch=args.start_epoch,
        resume=args.resume,
        learning_rate=args.lr,
        overwrite=args.overwrite,
    )
    if result.interrupted:
        print(f"resume with: python {script} --checkpoints {run_dir} --resume")
        if config.training.distribute == "multiworker":
            print("(on every worker, with the same cluster variables as this run)")
        return INTERRUPTED_EXIT_CODE
    print(f"final checkpoint: {result.final_checkpoint}")
    return 0
