"""The learning rate of every training step: the one home of the rate (no Keras here).

A run's rate at a position (completed epochs, batches done in the next one) is
a pure function of its config:

- `training.schedule` gives the curve, starting at `training.learning_rate`
  (pipeline/runs/schedules.py);
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

A resume that changes the curve itself (`--epochs`, `--set training.schedule=...`,
a rewind into another length) is a change too: the next batch trains at the
rate the run had there (unless `--lr` says otherwise) and the rest of the new
curve is rescaled to it, so the rate never jumps unasked. Such a change records
the curve's settings of the segment before it (`before`), so that the config
alone reproduces every rate of the run (`settings_at`).

Since the rate is a function of the position and the config, a resumed run
(even one resumed mid-epoch) follows exactly the rates of an uninterrupted
run given the same config, changes included.
"""

import dataclasses

from pipeline.config import CURVE_KEYS
from pipeline.runs.schedules import curve_settings, scheduled_rate

# Where a position (completed epochs, batches done in the next epoch) names a step.
Position = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class RateChange:
    """`--lr rate` given when training resumed at (epoch, batch)."""

    epoch: int
    batch: int
    rate: float
    # The curve settings of the segment that ended here, where they differ from the
    # segment that starts here ({"epochs": 30} when --epochs 45 extended a 30-epoch run).
    before: dict = dataclasses.field(default_factory=dict)

    @property
    def position(self) -> Position:
        return (self.epoch, self.batch)

    def to_dict(self) -> dict:
        values = {"epoch": self.epoch, "batch": self.batch, "rate": self.rate}
        return {**values, "before": dict(self.before)} if self.before else values


def rate_changes(training) -> tuple[RateChange, ...]:
    """The config's `rate_changes` (validated by TrainingConfig), in order."""
    return tuple(
        RateChange(
            int(item["epoch"]), int(item["batch"]), float(item["rate"]), item.get("before") or {}
        )
        for item in training.rate_changes
    )


def _settings_of_changes(training, changes) -> object:
    """The training config with the `before` settings of `changes` applied, the nearest
    change winning: a segment's curve is that of the first later change recording it."""
    values = {}
    for change in reversed(changes):
        values.update(change.before)
    if not values:
        return training
    if "milestones" in values:
        values["milestones"] = tuple(values["milestones"])
    # Without rate_changes: their own check would apply these settings again.
    return dataclasses.replace(training, rate_changes=(), **values)


def settings_at(training, position: Position):
    """The training config whose curve is in force at `position` (after a change made
    there): the base settings, or those a later change recorded as `before`."""
    later = [change for change in rate_changes(training) if change.position > position]
    return _settings_of_changes(training, later)


def settings_before(training, position: Position):
    """The training config whose curve trained the batches just before `position`."""
    later = [change for change in rate_changes(training) if change.position >= position]
    return _settings_of_changes(training, later)


def rate_at(training, epoch: int, batch: int, batches_per_epoch: int) -> float | None:
    """The rate the batch at (epoch, batch) trains at; None: the optimizer's own rate
    (plateau, except at a change)."""
    changes = rate_changes(training)
    in_force = [change for change in changes if change.position <= (epoch, batch)]
    # The segment's curve: from the changes after this position (they are in order).
    segment = _settings_of_changes(training, changes[len(in_force) :])
    scheduled = scheduled_rate(segment, epoch, batch, batches_per_epoch)
    if not in_force:
        return scheduled
    change = in_force[-1]
    if change.position == (epoch, batch):
        return change.rate
    if scheduled is None:
        return None
    anchor = scheduled_rate(segment, change.epoch, change.batch, batches_per_epoch)
    # The schedule is 0 only at the start of a warm-up (refused by TrainingConfig) and at
    # the end of a decay, where nothing is left to rescale: the change then holds.
    # (rate / anchor) first: a factor of exactly 1 leaves the curve exactly as it was.
    return scheduled * (change.rate / anchor) if anchor > 0 else change.rate


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


class RateNeeded(Exception):
    """A curve changed at a position where the run's rate had decayed to 0: nothing to
    rescale, so the user must give the rate to go on with (--lr)."""

    def __init__(self, changed: dict, last_rate: float | None, why: str) -> None:
        super().__init__(changed, last_rate, why)
        # key -> (old, new) of the curve settings that changed.
        self.changed = changed
        # The rate of the last epoch trained (its first batch), to name in the advice.
        self.last_rate = last_rate
        # Why there is no rate to go on from, in words.
        self.why = why


def continue_rate(recorded, training, position: Position, learning_rate, batches_per_epoch):
    """The training config a start at `position` trains with, under one rule for every
    change (--lr, --epochs, --set, a rewind): the next batch trains at `learning_rate`
    if given, else at the rate the run had there (`recorded`: the training config that
    brought it there), the rest of the curve rescaled to it. A change of the curve's own
    settings is recorded, with the settings it replaced (`before`), so that the config
    reproduces every rate. A new training.learning_rate is a rate asked for.

    Returns the config and the change made at `position` (None: none). Raises RateNeeded
    where the run's rate had decayed to 0 and no --lr was given.
    """
    earlier = dataclasses.replace(
        training,
        rate_changes=tuple(c.to_dict() for c in rate_changes(training) if c.position < position),
    )
    if recorded is None:
        return _with_rate(training, earlier, position, learning_rate, {})
    old = curve_settings(settings_before(recorded, position))
    new = curve_settings(training)
    # Every setting that differs is recorded, so that the config rebuilds the curve of
    # the epochs before (a later change of another setting would otherwise rewrite it).
    before = {key: old[key] for key in CURVE_KEYS if old[key] != new[key]}
    rate = learning_rate
    if rate is None and before:
        if training.learning_rate != recorded.learning_rate:
            rate = rate_at(earlier, *position, batches_per_epoch)  # a new rate, asked for
        else:
            rate = _rate_the_run_had(recorded, training, position, batches_per_epoch, before)
            if rate is None:
                return training, None  # plateau to plateau: the optimizer's rate goes on
    return _with_rate(training, earlier, position, rate, before)


def _rate_the_run_had(recorded, training, position: Position, batches_per_epoch, before):
    """The rate the run's next batch would have trained at, to go on from; RateNeeded
    where there is none to go on from (a decay at 0, or plateau's own rate, unknown here,
    followed by a curve)."""
    rate = rate_at(recorded, *position, batches_per_epoch)
    new_curve = scheduled_rate(training, *position, batches_per_epoch)
    changed = {key: (value, getattr(training, key)) for key, value in before.items()}
    if rate is None and new_curve is not None:
        raise RateNeeded(changed, None, "the plateau schedule's rate is the optimizer's own")
    if rate is not None and rate <= 0:
        last = rate_at(recorded, position[0] - 1, 0, 1) if position[0] else None
        raise RateNeeded(changed, last, "its rate had decayed to 0")
    return rate


def _with_rate(training, earlier, position: Position, rate, before: dict):
    if rate is None:
        return training, None  # nothing changed here: the run's own changes stand
    change = RateChange(position[0], position[1], float(rate), before)
    return with_change(earlier, change), change


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
