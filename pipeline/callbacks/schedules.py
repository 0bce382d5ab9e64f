"""Learning-rate schedules as pure functions of the training step.

`make_schedule(...)` returns `rate(step) -> float`, where step counts
optimizer updates from the start of training; epochs are step /
steps_per_epoch. Pure functions of the step make a resumed run (even one
resumed mid-epoch) follow exactly the rates of an uninterrupted one.
"""

import math
from collections.abc import Callable


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


def make_schedule(
    training, steps_per_epoch: int, initial_rate: float
) -> Callable[[int], float] | None:
    """The rate for each step under `training.schedule`; None where the optimizer's own rate
    is left alone (constant: the ctrl+c way, and plateau: Keras' ReduceLROnPlateau)."""
    kind = training.schedule  # validated by TrainingConfig
    if kind in ("constant", "plateau"):
        return None

    def epoch_of(step: int) -> int:
        return step // steps_per_epoch

    if kind == "polynomial":
        # Per epoch, as the reference: the rate of epoch e is set at its start.
        return lambda step: polynomial_decay(
            epoch_of(step),
            initial_rate=initial_rate,
            total_epochs=training.epochs,
            power=training.decay_power,
        )
    if kind == "step":
        return lambda step: step_decay(
            epoch_of(step),
            initial_rate=initial_rate,
            every=training.step_every,
            factor=training.decay_factor,
        )
    if kind == "multistep":
        in_iterations = training.milestone_unit == "iterations"
        return lambda step: multistep_decay(
            step if in_iterations else epoch_of(step),
            initial_rate=initial_rate,
            milestones=training.milestones,
            factor=training.decay_factor,
        )
    return lambda step: cosine_with_warmup(
        step / steps_per_epoch,
        initial_rate=initial_rate,
        total=training.epochs,
        warmup=training.warmup_epochs,
        minimum=training.min_learning_rate,
    )
