"""Experiment configuration: typed, frozen dataclasses loaded from TOML presets in config/.

A preset file sets any subset of the fields below; command-line overrides
(`section.key=value`) are applied on top; an unknown key or a value of the wrong
type is a UserError. The resolved config is saved in every run directory.

Every part of the pipeline reads its config from here; the modules behind it:
sections.py (the dataclasses and their constants), checks.py (the checks they make,
rate_changes included), coercion.py (a section from a nested mapping, types checked)
and loading.py (files, overrides). None of them loads a framework.
"""

from pipeline.config.checks import CURVE_KEYS
from pipeline.config.coercion import config_from_dict
from pipeline.config.fine_tune import FineTuneConfig
from pipeline.config.loading import (
    CONFIG_DIR,
    DEFAULT_CONFIG_PATH,
    MAX_CONFIG_BYTES,
    config_from_values,
    load_config,
)
from pipeline.config.sections import (
    DISTRIBUTIONS,
    PRECISIONS,
    SCHEDULES,
    DataConfig,
    ExpectedConfig,
    ExperimentConfig,
    ModelConfig,
    TrainingConfig,
)

__all__ = [
    "CONFIG_DIR",
    "CURVE_KEYS",
    "DEFAULT_CONFIG_PATH",
    "DISTRIBUTIONS",
    "MAX_CONFIG_BYTES",
    "PRECISIONS",
    "SCHEDULES",
    "DataConfig",
    "ExpectedConfig",
    "ExperimentConfig",
    "FineTuneConfig",
    "ModelConfig",
    "TrainingConfig",
    "config_from_dict",
    "config_from_values",
    "load_config",
]
