"""Command-line pieces shared by the scripts: config options, and the training command."""

import argparse

from pipeline.config import DEFAULT_CONFIG_PATH, ExperimentConfig, load_config
from pipeline.errors import OneLineArgumentParser


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
    parser.add_argument("--model", help="checkpoint to resume from")
    parser.add_argument("--start_epoch", type=int, help="epoch to resume at")
    parser.add_argument("--lr", type=float, help="learning rate to continue with")
    parser.add_argument("--epochs", type=int, help="total number of epochs (training.epochs)")
    parser.add_argument("--overwrite", action="store_true", help="start over in a used run dir")
    add_config_arguments(parser)
    return parser


def train_from_command_line(argv, *, schedule: str, description: str) -> None:
    """Parse the training options and train; prints the final checkpoint."""
    args = training_parser(description).parse_args(argv)
    # Imported only now, so that --help and option errors answer without loading Keras.
    from pipeline.training import train

    epochs = [f"training.epochs={args.epochs}"] if args.epochs is not None else []
    result = train(
        config_from_arguments(args, *epochs),
        run_dir=args.checkpoints,
        model_path=args.model,
        start_epoch=args.start_epoch,
        learning_rate=args.lr,
        schedule=schedule,
        overwrite=args.overwrite,
    )
    print(f"final checkpoint: {result.final_checkpoint}")
