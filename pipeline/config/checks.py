"""The checks a config section makes of its values: one-line UserErrors, and the
rate_changes of a resumed run, whose every segment of the curve must be a valid config.

Used by the sections (pipeline/config/sections.py) when they are built; this module
knows no section class, so that the sections can import it.
"""

import dataclasses
import math
import typing

from pipeline.config.coercion import coerce
from pipeline.errors import UserError

# The settings that shape the curve; a change's `before` holds those of the segment
# that ended at it, where they differ from the segment that follows.
CURVE_KEYS = (
    "schedule", "learning_rate", "epochs", "decay_power", "decay_factor", "step_every",
    "milestones", "milestone_unit", "warmup_epochs", "min_learning_rate",
)  # fmt: skip


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def require_choice(key: str, value: str, allowed) -> None:
    require(value in allowed, f"{key} must be one of {', '.join(allowed)}, got {value!r}")


def check_rate_changes(training) -> None:
    """Each change of `training` (a TrainingConfig) is {epoch, batch, rate} with a finite
    rate > 0, in increasing positions."""
    previous, befores = None, []
    for change in training.rate_changes:
        shown = f"training.rate_changes entry {change!r}"
        require(
            isinstance(change, dict) and set(change) - {"before"} == {"epoch", "batch", "rate"},
            f"{shown} must be a table with exactly the keys epoch, batch and rate (and before)",
        )
        befores.append(
            _settings_before(training, change["before"], shown) if "before" in change else {}
        )
        epoch, batch, rate = change["epoch"], change["batch"], change["rate"]
        require(
            all(isinstance(value, int) and not isinstance(value, bool) for value in (epoch, batch))
            and epoch >= 0
            and batch >= 0,
            f"{shown}: epoch and batch must be whole numbers >= 0",
        )
        require(
            isinstance(rate, int | float)
            and not isinstance(rate, bool)
            and math.isfinite(rate)
            and rate > 0,
            f"{shown}: rate must be a finite number > 0",
        )
        require(
            previous is None or (epoch, batch) > previous,
            f"{shown} must come after the change before it",
        )
        previous = (epoch, batch)
    starts_at_zero = training.schedule == "cosine" and training.warmup_epochs > 0
    require(
        not (starts_at_zero and previous is not None and training.rate_changes[0]["epoch"] == 0
             and training.rate_changes[0]["batch"] == 0),
        "training.rate_changes: a change at epoch 0, batch 0 of a warm-up has nothing to "
        "rescale; set training.learning_rate instead",
    )  # fmt: skip
    _check_segments(training, befores)


def _settings_before(training, before, shown: str) -> dict:
    """A change's `before` (the curve settings of the segment that ended at it), each of
    its type in `training`'s class; their ranges are checked with the segment's
    (`_check_segments`)."""
    require(
        isinstance(before, dict) and before and set(before) <= set(CURVE_KEYS),
        f"{shown}: before must be a table of some of {', '.join(CURVE_KEYS)}",
    )
    hints = typing.get_type_hints(type(training))
    return {key: coerce(hints[key], value, f"before.{key}", shown) for key, value in before.items()}


def _check_segments(training, befores: list[dict]) -> None:
    """The settings of every segment of the curve, as the changes rebuild them (the
    nearest later change recording a setting gives it), make a valid config: each
    segment trained once with them."""
    for index in range(len(befores)):
        values = {}
        for before in reversed(befores[index:]):
            values.update(before)
        if not values:
            continue
        try:
            # Without rate_changes: their own check would come back here.
            dataclasses.replace(training, rate_changes=(), **values)
        except UserError as error:
            entry = training.rate_changes[index]
            raise UserError(
                f"training.rate_changes: the curve before entry {entry!r} is not valid: {error}"
            ) from None
