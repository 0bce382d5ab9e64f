"""EpochCheckpoint: `.keras` checkpoints every N epochs, after the last one, and the best one.

Keras' ModelCheckpoint counts its period in batches when it is not every
epoch, writes in place (a crash mid-write leaves a truncated file), cannot
save at the end of training and knows nothing of the run directory's state
files; this callback does what the ctrl+c workflow needs.
"""

import math
from pathlib import Path

import keras

from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import point_latest, read_state, save_checkpoint
from pipeline.runs.run_dir import BEST, INTERRUPT, checkpoint_path, list_checkpoints, state_path


class EpochCheckpoint(keras.callbacks.Callback):
    """Save epoch_NNNN.keras every `every` epochs and after the last epoch trained.

    Diverged weights (a NaN or infinite loss) are never saved: the latest
    pointer keeps naming the last good checkpoint. `keep_last` > 0 deletes
    older epoch checkpoints; `best_metric` keeps best.keras.
    """

    def __init__(self, run_dir, every: int, *, state=None, keep_last=0, best_metric="") -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.every = every
        # Saved in every checkpoint's state file (the config, the class names): a dict,
        # or a function giving it when a checkpoint is saved.
        self.state = state or {}
        self.keep_last = keep_last
        self.best_metric = best_metric
        # A resumed run competes with the best of the epochs before it.
        best = self.run_dir / BEST
        previous = read_state(best) if best.is_file() else {}
        self.best_value = previous.get("value") if previous.get("metric") == best_metric else None
        self.last_completed_epoch = None
        self.last_saved_epoch = None
        self.diverged = False
        # Where the loss stopped being finite: (epoch, numbered as Keras', and the logs).
        self.divergence = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.diverged:
            return
        if not all(_finite(value) for value in logs.values()):
            self.diverged = True
            self.divergence = (epoch + 1, dict(logs))
            return
        completed = epoch + 1
        self.last_completed_epoch = completed
        if completed % self.every == 0:
            self._save(completed)
        self._maybe_save_best(completed, logs)

    def on_train_end(self, logs=None):
        if self.diverged:
            return
        if self.last_completed_epoch not in (None, self.last_saved_epoch):
            self._save(self.last_completed_epoch)

    def _save(self, completed_epochs: int) -> None:
        path = save_checkpoint(
            self.model,
            checkpoint_path(self.run_dir, completed_epochs),
            epoch=completed_epochs,
            extra=self._state(),
        )
        point_latest(self.run_dir, path)
        self._remove_passed_interrupt(completed_epochs)
        self.last_saved_epoch = completed_epochs
        if self.keep_last:
            for old in list(list_checkpoints(self.run_dir).values())[: -self.keep_last]:
                old.unlink(missing_ok=True)
                state_path(old).unlink(missing_ok=True)

    def _remove_passed_interrupt(self, completed_epochs: int) -> None:
        """An interrupt this run has trained past is stale: the epoch checkpoint just
        saved supersedes it, and nothing should ever resume from it by mistake."""
        interrupt = self.run_dir / INTERRUPT
        if not interrupt.is_file():
            return
        try:
            state = read_state(interrupt)
        except UserError:
            state = {"epoch": 0, "batch": 0}  # no position: it cannot be ahead of this
        if (state["epoch"], state["batch"]) <= (completed_epochs, 0):
            interrupt.unlink(missing_ok=True)
            state_path(interrupt).unlink(missing_ok=True)

    def _state(self) -> dict:
        return self.state() if callable(self.state) else self.state

    def _maybe_save_best(self, completed: int, logs) -> None:
        if not self.best_metric or self.best_metric not in logs:
            return
        value = float(logs[self.best_metric])
        # Accuracies improve upwards, losses downwards.
        higher_is_better = "acc" in self.best_metric or "rank" in self.best_metric
        improved = self.best_value is None or (
            value > self.best_value if higher_is_better else value < self.best_value
        )
        if improved:
            self.best_value = value
            save_checkpoint(
                self.model,
                self.run_dir / BEST,
                epoch=completed,
                extra={**self._state(), "metric": self.best_metric, "value": value},
            )


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True
