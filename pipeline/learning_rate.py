"""The learning rate of every training step: the one home of the rate (no Keras here).

A run's rate at a position (completed epochs, batches done in the next one) is
a pure function of its config:

- `training.schedule` gives the curve, starting at `training.learning_rate`;
- `training.rate_changes` lists the changes a user made with `--lr X` on
  resuming, each at the position where training resumed.

After a change to X at position p, every later rate is the schedule's rate
times X / (the schedule's rate at p): the rest of the curve, rescaled so that
the very next batch trains at X. So a constant schedule stays at X; step and
multistep stay at X until the next decay, then X * factor; polynomial and
cosine decay from X along the rest of their curve. A later change replaces
the earlier one. `plateau` is not a function of the position (Keras'
ReduceLROnPlateau lowers the rate when the monitored value stalls): a change
sets X at p and the plateau logic lowers it from there.

Since the rate is a function of the position and the config, a resumed run
(even one resumed mid-epoch) follows exactly the rates of an uninterrupted
run given the same config, changes included.
"""

import dataclasses
import math

# Where a position (completed epochs, batches done in the next epoch) names a step.
Position = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class RateChange:
    """`--lr rate` given when training resumed at (epoch, batch)."""

    epoch: int
    batch: int
    rate: float

    @property
    def position(self) -> Position:
        return (self.epoch, self.batch)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "rate": self.rate}


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


def rate_changes(training) -> tuple[RateChange, ...]:
    """The config's `rate_changes` (validated by TrainingConfig), in order."""
    return tuple(
        RateChange(int(item["epoch"]), int(item["batch"]), float(item["rate"]))
        for item in training.rate_changes
    )


def rate_at(training, epoch: int, batch: int, batches_per_epoch: int) -> float | None:
    """The rate the batch at (epoch, batch) trains at; None: the optimizer's own rate
    (plateau, except at a change)."""
    scheduled = scheduled_rate(training, epoch, batch, batches_per_epoch)
    in_force = [change for change in rate_changes(training) if change.position <= (epoch, batch)]
    if not in_force:
        return scheduled
    change = in_force[-1]
    if change.position == (epoch, batch):
        return change.rate
    if scheduled is None:
        return None
    anchor = scheduled_rate(training, change.epoch, change.batch, batches_per_epoch)
    # The schedule is 0 only at the start of a warm-up (refused by TrainingConfig) and at
    # the end of a decay, where nothing is left to rescale: the change then holds.
    return scheduled * change.rate / anchor if anchor > 0 else change.rate


def with_changes_up_to(training, position: Position):
    """The training config with only the changes made at or before `position`: going back
    to a checkpoint drops the changes of the branch that followed it."""
    kept = [change.to_dict() for change in rate_changes(training) if change.position <= position]
    return dataclasses.replace(training, rate_changes=tuple(kept))


def with_change(training, change: RateChange):
    """The training config with `change` added; changes after its position are dropped and
    one at the same position is replaced."""
    earlier = [c.to_dict() for c in rate_changes(training) if c.position < change.position]
    return dataclasses.replace(training, rate_changes=(*earlier, change.to_dict()))


def describe_position(position: Position) -> str:
    """A position in the words of the progress line: the batch trained next, 1-based."""
    epoch, batch = position
    return f"epoch {epoch + 1}, batch {batch + 1}"


def describe_rule(training) -> str:
    """How the rate goes on after the latest change, in words (for the start line)."""
    changes = rate_changes(training)
    if not changes:
        return f"{training.schedule} schedule from {training.learning_rate:g}"
    last = changes[-1]
    where = f"--lr {last.rate:g} from {describe_position(last.position)}"
    if training.schedule == "constant":
        return f"constant, {where}"
    if training.schedule == "plateau":
        return f"plateau, {where}; lowered by {training.decay_factor:g} when it stalls"
    return f"{training.schedule} schedule rescaled to {where}"
