"""find_lr.py's fit: a fresh copy of the config's network (fine_tune.init included) trained
batch by batch at exponentially rising rates, then lr_range.png and lr_range.json.

It writes only into its output folder: no run directory is made or touched.
"""

import math
import os
from pathlib import Path

import keras
import numpy as np

from pipeline.config import ExperimentConfig
from pipeline.errors import UserError
from pipeline.fine_tuning import initial_model
from pipeline.runs.json_files import write_json_atomically
from pipeline.training.data import open_data
from pipeline.training.distribute import precision_policy, seed_everything, setup_distribution
from pipeline.training.engine import build_optimizer
from pipeline.training.lr_range import diverged_at, exponential_rates, smoothed, suggest
from pipeline.training.precision import resolve_precision

PLOT_FILE, RESULT_FILE = "lr_range.png", "lr_range.json"


def find_learning_rate(
    config: ExperimentConfig,
    *,
    min_rate: float,
    max_rate: float,
    batches: int,
    output_dir,
    command_for=None,
) -> dict:
    """Train a copy of `config`'s network for up to `batches` batches, the rate rising from
    `min_rate` to `max_rate`; returns the result lr_range.json holds, with the command
    that starts a run at the suggested rate (`command_for(rate)`) where given."""
    rates = exponential_rates(min_rate, max_rate, batches)
    precision, _ = resolve_precision(config.training.precision, config.model.network())
    with precision_policy(precision):
        seed_everything(config.training.seed, config.training.deterministic)
        train_data, _ = open_data(config, setup_distribution("none"))
        model = initial_model(config, train_data.info, train_data.image_shape).model
        model.compile(
            optimizer=build_optimizer(config.training, config.fine_tune.backbone_rate_scale),
            loss="sparse_categorical_crossentropy",
        )
        losses = _losses_at(model, train_data, rates)
    tried = rates[: len(losses)]
    smooth = smoothed(losses, batches)
    stop = diverged_at(smooth)
    kept = len(losses) if stop is None else stop
    if kept < 3:
        raise_too_early(tried)
    suggestion = suggest(tried[:kept], smooth[:kept])
    result = {
        "suggested_rate": float(f"{suggestion.rate:.3g}"),
        "how": suggestion.how,
        "command": command_for(float(f"{suggestion.rate:.3g}")) if command_for else None,
        "lowest_loss_rate": suggestion.lowest_loss_rate,
        "steepest_fall_rate": suggestion.steepest_rate,
        "min_rate": min_rate,
        "max_rate": max_rate,
        "batches": len(losses),
        "stopped": "the loss diverged" if stop is not None else "the last rate was reached",
        "precision": precision,
        "rates": tried.tolist(),
        # Non-finite losses (a diverged batch) are written as null: strict JSON.
        "losses": [value if math.isfinite(value) else None for value in losses],
        "smoothed": [float(value) if math.isfinite(value) else None for value in smooth],
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _plot(tried[:kept], np.asarray(losses[:kept]), smooth[:kept], result, output_dir / PLOT_FILE)
    write_json_atomically(output_dir / RESULT_FILE, result)
    return result


def _losses_at(model, train_data, rates) -> list[float]:
    """Each batch's loss, trained at its rate, epoch after epoch of shuffled, augmented
    batches; stops once the smoothed loss diverges."""
    losses, epoch, batch = [], 0, 0
    train_data.set_epoch(0)
    for rate in rates:
        if batch == train_data.batches_per_epoch:
            epoch, batch = epoch + 1, 0
            train_data.set_epoch(epoch)
        images, labels = train_data[batch]
        batch += 1
        model.optimizer.learning_rate.assign(float(rate))
        logs = model.train_on_batch(images, labels, return_dict=True)
        losses.append(float(keras.ops.convert_to_numpy(logs["loss"])))
        if diverged_at(smoothed(losses, len(rates))) is not None:
            break
    return losses


def raise_too_early(rates) -> None:
    raise UserError(
        f"the loss diverged within the first batches, at rates from {rates[0]:g}: "
        f"start lower (--min {rates[0] / 100:g})"
    )


def _plot(rates, losses, smooth, result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(rates, losses, color="0.75", linewidth=0.8, label="loss of each batch")
    axes.plot(rates, smooth, color="tab:blue", linewidth=2, label="smoothed loss")
    suggested = result["suggested_rate"]
    axes.axvline(suggested, color="tab:red", linestyle="--", label=f"suggested {suggested:g}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("training loss")
    # The diverging tail can dwarf the rest: the axis stops a little above the start.
    top = max(float(smooth[0]), float(np.min(smooth))) * 1.5
    axes.set_ylim(max(0.0, float(np.min(smooth)) * 0.8), top)
    axes.set_title(f"learning-rate range test ({result['batches']} batches)")
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    temporary = path.with_name(path.name + ".tmp.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, path)
