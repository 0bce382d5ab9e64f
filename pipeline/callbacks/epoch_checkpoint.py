"""Saving `.keras` checkpoints every N epochs and when training ends.

Keras' ModelCheckpoint counts its period in batches when it is not every
epoch, writes in place (a crash mid-write leaves a truncated file) and cannot
save at the end of training; this callback does the three things the
ctrl+c workflow needs: every N epochs, atomic, and always a final one.
"""

import os
import re
from pathlib import Path

import keras

CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d+)\.keras$")


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """The checkpoint written after `epoch` completed epochs."""
    return Path(run_dir) / f"epoch_{epoch:04d}.keras"


def list_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """Completed checkpoints in a run directory, by epoch number (partial writes excluded)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    found = {}
    for path in run_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def save_model_atomically(model: keras.Model, path: str | Path) -> Path:
    """Save to a temporary name in the same directory, then rename into place."""
    path = Path(path)
    # Keras insists on the .keras extension, so the temporary name keeps it.
    temporary = path.with_name(f".{path.stem}.partial.keras")
    model.save(temporary)
    os.replace(temporary, path)
    return path


class EpochCheckpoint(keras.callbacks.Callback):
    """Save `epoch_NNNN.keras` every `every` epochs, and after the last epoch trained."""

    def __init__(self, run_dir: str | Path, every: int) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.every = every
        self.last_completed_epoch = None
        self.last_saved_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        completed = epoch + 1
        self.last_completed_epoch = completed
        if completed % self.every == 0:
            self._save(completed)

    def on_train_end(self, logs=None):
        if self.last_completed_epoch not in (None, self.last_saved_epoch):
            self._save(self.last_completed_epoch)

    def _save(self, completed_epochs: int) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_model_atomically(self.model, checkpoint_path(self.run_dir, completed_epochs))
        self.last_saved_epoch = completed_epochs
