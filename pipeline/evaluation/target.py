"""Which model and which split rank_accuracy.py scores (no Keras here).

The model: --model, else the latest checkpoint of --checkpoints, else of the
config's run directory. The data: --dataset, else the data set the checkpoint
was trained on (its state records the config), else the config's. A choice
that differs from what the config names is said, never made silently.
"""

import dataclasses
from pathlib import Path

from pipeline.advice import Invocation
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.identity import require_split
from pipeline.datasets.kinds import KINDS, build_advice
from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.run_reading import latest_checkpoint


@dataclasses.dataclass(frozen=True)
class EvaluationTarget:
    model_path: Path
    split_file: Path
    # Where the split came from, in words, and anything the user should know.
    data_source: str
    notes: tuple[str, ...] = ()


def newest_checkpoint(run_dir: str | Path, training: Invocation | None = None) -> Path:
    """The run's latest checkpoint (latest.json, else the highest epoch). `training` is
    the training command that makes it (the --config and --set given here, kept)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        command = (training or Invocation()).command(checkpoints=str(run_dir))
        raise UserError(
            f"no checkpoint in {run_dir}; train first ('{command}') or pass --model PATH"
        )
    return checkpoint


def resolve_split_file(dataset: str | Path, split: str) -> Path:
    """A dataset argument may name the split file itself or the directory holding it."""
    dataset = Path(dataset)
    return dataset if dataset.suffix == ".h5" else split_path(dataset, split)


def evaluation_target(
    config, *, model=None, checkpoints=None, dataset=None, split=None, training=None
) -> EvaluationTarget:
    """The model file and split file to score, and where each choice came from; `training`
    (an Invocation) is the command advised when there is no checkpoint yet."""
    if model and checkpoints:
        raise UserError("--model names a checkpoint and --checkpoints a run: give one of them")
    model_path = (
        Path(model) if model else newest_checkpoint(checkpoints or config.checkpoints, training)
    )
    if not model_path.is_file():
        what = "does not exist" if not model_path.exists() else "is not a regular file"
        named = f"--model {model_path}" if model else f"the latest checkpoint {model_path}"
        raise UserError(f"{named} {what}")
    if dataset:
        split_file = resolve_split_file(dataset, split or config.data.test_split)
        return EvaluationTarget(model_path, split_file, "--dataset")
    trained = read_state(model_path).get("config", {}).get("data")
    if not trained or not trained.get("dataset_dir"):
        split_file = resolve_split_file(config.data.dataset_dir, split or config.data.test_split)
        require_split(config.data, split_file)
        return EvaluationTarget(model_path, split_file, "the config (no training record)")
    trained_dir = Path(trained["dataset_dir"])
    split_file = resolve_split_file(trained_dir, split or trained.get("test_split", "test"))
    if not split_file.is_file():
        kind = trained.get("dataset")
        rebuild = f", or {build_advice(kind, trained_dir)}" if kind in KINDS else ""
        raise UserError(
            f"{model_path} was trained on {trained_dir}, and {split_file} is not there; "
            f"pass --dataset DIR to score another copy of that data set{rebuild}"
        )
    notes = ()
    if Path(config.data.dataset_dir) != trained_dir:
        notes = (
            f"the config names {config.data.dataset_dir}; scoring {trained_dir}, the data "
            f"{model_path.name} was trained on (--dataset chooses another)",
        )
    return EvaluationTarget(model_path, split_file, "the checkpoint's training config", notes)
