"""The learning-rate range test's numbers (Smith 2017, "Cyclical Learning Rates", Sec. 3.3):
rates rising exponentially batch by batch, the loss smoothed, and the rate to suggest.

No framework here: pipeline/training/lr_range_fit.py trains, this decides.
"""

import dataclasses
import math

import numpy as np

from pipeline.errors import UserError

# The loss is averaged over about a twentieth of the test's batches (an exponential
# moving average with bias correction): a longer average lags, and its curve, drawn
# against a rate that rises every batch, moves to higher rates than the loss had.
SMOOTHING_SHARE = 1 / 20
MIN_SMOOTHING_BATCHES = 5
# The test stops once the smoothed loss exceeds this many times its lowest value.
DIVERGED_FACTOR = 4.0
# The first share of the batches is left out of the suggestion: the average still
# settles there.
SETTLING_SHARE = 0.1


def exponential_rates(min_rate: float, max_rate: float, count: int) -> np.ndarray:
    """`count` rates from `min_rate` to `max_rate`, each a constant factor above the last."""
    if not (math.isfinite(min_rate) and math.isfinite(max_rate) and 0 < min_rate < max_rate):
        raise UserError(
            f"the rate range must satisfy 0 < --min < --max, got {min_rate:g} and {max_rate:g}"
        )
    if count < 10:
        raise UserError(f"the range test needs at least 10 batches, got {count}")
    return min_rate * (max_rate / min_rate) ** (np.arange(count) / (count - 1))


def smoothed(losses, total_batches: int) -> np.ndarray:
    """The exponential moving average of `losses` over about a twentieth of the
    `total_batches` of the test, bias-corrected (the first values are not pulled
    towards zero)."""
    window = max(MIN_SMOOTHING_BATCHES, total_batches * SMOOTHING_SHARE)
    keep = 1 - 1 / window
    average, values = 0.0, []
    for step, loss in enumerate(losses, start=1):
        average = keep * average + (1 - keep) * loss
        values.append(average / (1 - keep**step))
    return np.asarray(values)


def diverged_at(smoothed_losses) -> int | None:
    """The first batch whose smoothed loss is not finite or above DIVERGED_FACTOR times
    the lowest before it; None if none."""
    lowest = math.inf
    for index, value in enumerate(smoothed_losses):
        if not math.isfinite(value) or value > DIVERGED_FACTOR * lowest:
            return index
        lowest = min(lowest, value)
    return None


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """The rate to start from, with the two rates it comes from, and how it was chosen."""

    rate: float
    lowest_loss_rate: float
    steepest_rate: float | None
    how: str


def suggest(rates, smoothed_losses) -> Suggestion:
    """A tenth of the rate where the smoothed loss is lowest (Smith's and fastai's rule:
    the lowest point is already near the edge of divergence), and, for the record, the
    rate where it falls fastest against log(rate) before that point."""
    rates, losses = np.asarray(rates, float), np.asarray(smoothed_losses, float)
    if len(rates) < 3 or not np.isfinite(losses).all():
        raise ValueError("suggest needs at least 3 finite losses")
    lowest = int(np.argmin(losses))
    start = min(int(len(rates) * SETTLING_SHARE), max(lowest - 1, 0))
    slopes = np.gradient(losses, np.log10(rates))[start : lowest + 1]
    steepest = float(rates[start + int(np.argmin(slopes))]) if slopes.min() < 0 else None
    lowest_rate = float(rates[lowest])
    how = "a tenth of the rate where the smoothed loss was lowest"
    if steepest is None:
        how += "; the loss never fell: try a wider range (--min, --max)"
    elif lowest == len(rates) - 1:
        how += "; it still fell at the highest rate: a larger --max shows where it turns"
    return Suggestion(max(lowest_rate / 10, float(rates[0])), lowest_rate, steepest, how)
