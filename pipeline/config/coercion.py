"""A config section built from a plain nested mapping (a preset, a saved config.json):
each value checked against its field's type, an unknown key a UserError.

Knows no section class (it reads the fields of the class it is given), so that both
the sections' checks and the loading can use it.
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from pipeline.errors import UserError


def config_from_dict(cls: type, values: Mapping[str, Any], source: str = "config", prefix=""):
    """Build dataclass `cls` from a nested mapping; unknown keys and wrong types are UserErrors."""
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    arguments = {}
    for key, value in values.items():
        full_key = f"{prefix}{key}"
        if key not in known:
            raise UserError(
                f"unknown config key '{full_key}' in {source}; "
                f"known keys here: {', '.join(sorted(prefix + name for name in known))}"
            )
        arguments[key] = coerce(hints[key], value, full_key, source)
    return cls(**arguments)


def coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    """`value` as of type `hint` (a section, a union, a tuple, a plain type), or a
    UserError naming `key` in `source`."""
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise UserError(f"config key '{key}' in {source} must be a table, got {value!r}")
        return config_from_dict(hint, value, source, prefix=f"{key}.")
    origin = typing.get_origin(hint)
    if origin is types.UnionType:
        # `bool | str` and the like: the value is checked against each member, as written.
        if not isinstance(value, typing.get_args(hint)):
            names = " or ".join(member.__name__ for member in typing.get_args(hint))
            raise UserError(
                f"config key '{key}' in {source} must be of type {names}, got {value!r}"
            )
        return value
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise UserError(f"config key '{key}' in {source} must be a list, got {value!r}")
        return tuple(coerce(item_type, item, key, source) for item in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is a subclass of int: refuse `epochs = true` explicitly.
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise UserError(
            f"config key '{key}' in {source} must be of type {hint.__name__}, got {value!r}"
        )
    return value
