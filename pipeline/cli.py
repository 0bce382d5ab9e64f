"""Command-line pieces shared by the scripts: config options, and the training command."""

import argparse
import sys

from pipeline.api import train
from pipeline.config import (
    DEFAULT_CONFIG_PATH,
    ExperimentConfig,
    load_config,
)
from pipeline.errors import (
    DIVERGED_EXIT_CODE,
    INTERRUPTED_EXIT_CODE,
    TERMINATED_EXIT_CODE,
    OneLineArgumentParser,
)


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
    parser.add_argument(
        "--init",
        action=_InitAction,
        metavar="CHECKPOINT",
        help="fine-tune: start from a checkpoint's weights up to the classifier (or Keras' "
        "ImageNet weights: keras:resnet50); the same as --set fine_tune.init=CHECKPOINT",
    )
    return parser


class _InitAction(argparse.Action):
    """--init X is --set fine_tune.init=X, in its place among the --set values (so that
    the commands a run advises, which repeat the --set values, keep it)."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.overrides = [*namespace.overrides, f"fine_tune.init={value}"]


def train_from_command_line(argv, *, script: str, schedule: str | None, description: str) -> int:
    """Parse the training options and train. Returns the exit code: 0; 130 after ctrl+c,
    143 after SIGTERM (the position saved either way); 3 when the loss stopped being finite.

    Resuming without --config continues with the run directory's own config.json.
    `schedule` is the schedule the script always trains with (train_decay.py: polynomial).
    What the run directory and the config decide is refused before Keras loads.
    """
    args = training_parser(description).parse_args(argv)
    result = train(
        args.config,
        args.checkpoints,
        overrides=args.overrides,
        resume=args.resume,
        start_epoch=args.start_epoch,
        model=args.model,
        lr=args.lr,
        epochs=args.epochs,
        overwrite=args.overwrite,
        script=script,
        schedule=schedule,
    )
    if result.interrupted:
        if result.config.training.distribute == "multiworker":
            print("(on every worker, with the same cluster variables as this run)")
        return TERMINATED_EXIT_CODE if result.interrupted.by == "SIGTERM" else INTERRUPTED_EXIT_CODE
    if result.divergence:
        print(f"error: {result.divergence}", file=sys.stderr)
        return DIVERGED_EXIT_CODE
    print(f"final checkpoint: {result.final_checkpoint}")
    return 0
