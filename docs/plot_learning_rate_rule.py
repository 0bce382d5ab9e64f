"""Draw docs/learning_rate_rule.png: each schedule, and the same after `--lr 0.02` at epoch 13.

python docs/plot_learning_rate_rule.py

The curves come from pipeline.runs.learning_rate.rate_at, the function training uses.
"""

import sys
from pathlib import Path

import matplotlib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import TrainingConfig  # noqa: E402
from pipeline.runs.learning_rate import rate_at  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EPOCHS, BATCHES, CHANGE_EPOCH, NEW_RATE = 30, 50, 12, 0.02
SCHEDULES = {
    "constant": {},
    "step (every 10 epochs, x0.1)": {"schedule": "step", "step_every": 10.0},
    "multistep (epochs 15 and 25, x0.1)": {"schedule": "multistep", "milestones": (15.0, 25.0)},
    "polynomial (power 2)": {"schedule": "polynomial", "decay_power": 2.0},
    "cosine (2 warm-up epochs)": {"schedule": "cosine", "warmup_epochs": 2.0},
}


def curve(training):
    positions = [(epoch, batch) for epoch in range(EPOCHS) for batch in range(BATCHES)]
    x = [epoch + batch / BATCHES for epoch, batch in positions]
    return x, [rate_at(training, epoch, batch, BATCHES) for epoch, batch in positions]


FIGURE = Path(__file__).resolve().parent / "learning_rate_rule.png"


def main(path=FIGURE):
    figure, axes = plt.subplots(len(SCHEDULES), 1, figsize=(8, 12), sharex=True)
    for axis, (title, fields) in zip(axes, SCHEDULES.items(), strict=True):
        configured = TrainingConfig(epochs=EPOCHS, learning_rate=0.1, **fields)
        changed = TrainingConfig(
            epochs=EPOCHS,
            learning_rate=0.1,
            rate_changes=({"epoch": CHANGE_EPOCH, "batch": 0, "rate": NEW_RATE},),
            **fields,
        )
        axis.plot(*curve(configured), "--", color="grey", label="as configured")
        axis.plot(*curve(changed), color="tab:green", label=f"--lr {NEW_RATE} at epoch 13")
        axis.axvline(CHANGE_EPOCH, color="tab:red", alpha=0.3)
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("learning rate")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("epoch")
    figure.suptitle("The rate after --resume --lr 0.02 at the start of epoch 13")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    print(path)


if __name__ == "__main__":
    main()
