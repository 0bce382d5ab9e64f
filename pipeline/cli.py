"""Command-line pieces shared by the scripts: the config options and their resolution."""

import argparse

from pipeline.config import DEFAULT_CONFIG_PATH, ExperimentConfig, load_config


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
