"""The schedules' curves: the rate at a position from `training.schedule` and its
settings alone, before any --lr change (no Keras here). The changes, and the rate
of every training step, are pipeline/runs/learning_rate.py's."""

import math

from pipeline.config import CURVE_KEYS


def polynomial_decay(epoch: int, *, initial_rate: float, total_epochs: int, power: float = 1.0):
    """initial_rate * (1 - epoch / total_epochs) ** power; power 1 is a linear decay to 0."""
    remaining = max(0.0, 1.0 - epoch / total_epochs)
    return initial_rate * remaining**power


def step_decay(epoch: int, *, initial_rate: float, every: float, factor: float) -> float:
    """initial_rate * factor ** floor(epoch / every)."""
    return initial_rate * factor ** math.floor(epoch / every)


def multistep_decay(position: float, *, initial_rate: float, milestones, factor: float) -> float:
    """initial_rate * factor ** (number of milestones reached); the paper: /10 at 32k and 48k."""
    return initial_rate * factor ** sum(position >= milestone for milestone in milestones)


def cosine_with_warmup(
    position: float, *, initial_rate: float, total: float, warmup: float, minimum: float = 0.0
) -> float:
    """Linear warm-up from 0 over `warmup`, then a half cosine from initial_rate to `minimum`."""
    if position < warmup:
        return initial_rate * position / warmup
    progress = min(1.0, (position - warmup) / max(total - warmup, 1e-12))
    return minimum + 0.5 * (initial_rate - minimum) * (1.0 + math.cos(math.pi * progress))


def scheduled_rate(training, epoch: int, batch: int, batches_per_epoch: int) -> float | None:
    """The config's schedule at a position, before any --lr change; None for plateau."""
    kind = training.schedule  # validated by TrainingConfig
    initial_rate = training.learning_rate
    if kind == "plateau":
        return None
    if kind == "constant":
        return initial_rate
    if kind == "polynomial":
        # Per epoch, as the reference: the rate of epoch e is set at its start.
        return polynomial_decay(
            epoch,
            initial_rate=initial_rate,
            total_epochs=training.epochs,
            power=training.decay_power,
        )
    if kind == "step":
        return step_decay(
            epoch,
            initial_rate=initial_rate,
            every=training.step_every,
            factor=training.decay_factor,
        )
    if kind == "multistep":
        in_iterations = training.milestone_unit == "iterations"
        return multistep_decay(
            epoch * batches_per_epoch + batch if in_iterations else epoch,
            initial_rate=initial_rate,
            milestones=training.milestones,
            factor=training.decay_factor,
        )
    return cosine_with_warmup(
        epoch + batch / batches_per_epoch,
        initial_rate=initial_rate,
        total=training.epochs,
        warmup=training.warmup_epochs,
        minimum=training.min_learning_rate,
    )


# The settings each schedule's curve depends on (beside its name).
CURVE_OF = {
    "constant": ("learning_rate",),
    "step": ("learning_rate", "step_every", "decay_factor"),
    "multistep": ("learning_rate", "milestones", "milestone_unit", "decay_factor"),
    "polynomial": ("learning_rate", "epochs", "decay_power"),
    "cosine": ("learning_rate", "epochs", "warmup_epochs", "min_learning_rate"),
    "plateau": ("learning_rate",),
}


def curve_settings(training) -> dict:
    """The settings that shape the curve, as plain values (milestones as a list)."""
    values = {key: getattr(training, key) for key in CURVE_KEYS}
    return {**values, "milestones": [float(value) for value in values["milestones"]]}
