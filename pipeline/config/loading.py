"""Reading a config: a TOML preset of config/ or a run's saved config.json, with the
command line's `section.key=value` overrides applied on top, into an ExperimentConfig.
"""

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.config.coercion import config_from_dict
from pipeline.config.sections import ExperimentConfig
from pipeline.errors import UserError

# The repository's config/ folder (this file is pipeline/config/loading.py).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "digits.toml"
# A preset or a run's config.json is a few KiB: a larger file is refused unread.
MAX_CONFIG_BYTES = 4 * 1024**2


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a TOML preset or a saved config.json (the default preset when path is None) and
    apply `key=value` overrides."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; presets are in {CONFIG_DIR}")
    with open(path, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"config file {path} is over {MAX_CONFIG_BYTES} bytes; not a config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not UTF-8 text ({error.reason})") from None
    try:
        # A run directory's config.json (the resolved config) reads like a preset.
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"config file {path} is not valid: {error}") from None
    except RecursionError:
        raise UserError(f"config file {path} is not valid: nested too deep") from None
    if not isinstance(values, Mapping):
        raise UserError(f"config file {path} is not valid: not a table (JSON object)")
    return config_from_values(values, overrides, source=str(path))


def config_from_values(values: Mapping[str, Any], overrides: Iterable[str] = (), source="config"):
    """The config of a nested mapping (a checkpoint's saved config) with overrides applied."""
    values = json.loads(json.dumps(values))  # a deep copy the overrides may change
    for override in overrides:
        _apply_override(values, override, source)
    return config_from_dict(ExperimentConfig, values, source=source)


def _apply_override(values: dict[str, Any], override: str, source: str = "config") -> None:
    """Apply one `section.key=value` override; the value is read as TOML, else as a string."""
    key, separator, raw_value = override.partition("=")
    if not separator or not key.strip():
        raise UserError(f"override {override!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"value = {raw_value}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    *sections, leaf = key.strip().split(".")
    table = values
    for section in sections:
        table = table.setdefault(section, {})
        if not isinstance(table, dict):
            raise UserError(
                f"override {override!r}: '{section}' is not a section in {source} "
                f"(got {table!r:.60})"
            )
    table[leaf] = value
