"""Rank-1 / rank-5 accuracy of a model over every sample of a split."""

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.datasets.hdf5_format import read_split_info, split_path
from pipeline.errors import UserError
from pipeline.io import HDF5DatasetGenerator
from pipeline.nn.model_io import check_model_matches_data, load_model
from pipeline.run_dir import latest_checkpoint


def rank_k_hits(probabilities: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """For each sample, whether its true class is among the k highest scores.

    A sample's rank is the number of classes scored strictly higher than its
    true class, so ties at the boundary count as hits, as in Keras' top-k
    metric. k larger than the class count means every sample is a hit.
    """
    labels = np.asarray(labels)
    true_scores = probabilities[np.arange(len(labels)), labels]
    num_higher = (probabilities > true_scores[:, np.newaxis]).sum(axis=1)
    return num_higher < k


def rank_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the k highest scores."""
    return float(np.mean(rank_k_hits(probabilities, labels, k)))


def predict_split(model, generator: HDF5DatasetGenerator) -> np.ndarray:
    """Class probabilities for every sample of an unshuffled generator, in file order."""
    if generator.shuffle:
        raise ValueError("evaluation needs an unshuffled generator (shuffle=False)")
    batches = []
    for index in tqdm(range(len(generator)), desc="evaluating", unit="batch"):
        images, _labels = generator[index]
        batches.append(np.asarray(model.predict_on_batch(images)))
    return np.concatenate(batches)


def newest_checkpoint(run_dir: str | Path) -> Path:
    """The run's latest checkpoint (latest.json, else the highest epoch)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise UserError(
            f"no checkpoint in {run_dir}; train first ('python train.py --checkpoints "
            f"{run_dir}') or pass --model PATH"
        )
    return checkpoint


def resolve_split_file(dataset: str | Path, split: str) -> Path:
    """A dataset argument may name the split file itself or the directory holding it."""
    dataset = Path(dataset)
    return dataset if dataset.suffix == ".h5" else split_path(dataset, split)


def evaluate(model_path, split_file, *, batch_size: int = 256) -> dict:
    """Rank-1 and rank-5 accuracy of a checkpoint over every sample of a split file."""
    info = read_split_info(split_file)
    model = load_model(model_path)
    # JPEG-encoded splits are decoded to the size the model was trained on.
    image_size = model.input_shape[1] if info.encoding == "jpeg" else None
    generator = HDF5DatasetGenerator(
        split_file, min(batch_size, info.num_samples), shuffle=False, image_size=image_size
    )
    check_model_matches_data(model, info, model_path, generator.image_shape)
    probabilities = predict_split(model, generator)
    labels = generator.labels()
    rank1_hits = rank_k_hits(probabilities, labels, 1)
    rank5_hits = rank_k_hits(probabilities, labels, 5)
    return {
        "model": str(model_path),
        "dataset": str(split_file),
        "split": info.split,
        "num_samples": int(len(labels)),
        "num_classes": info.num_classes,
        "rank1": float(rank1_hits.mean()),
        "rank5": float(rank5_hits.mean()),
        "rank1_correct": int(rank1_hits.sum()),
        "rank5_correct": int(rank5_hits.sum()),
    }


def write_report(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def format_report(report: dict) -> str:
    count = report["num_samples"]
    return (
        f"{report['split']} split of {report['dataset']}: {count} samples\n"
        f"rank-1: {report['rank1']:.2%} ({report['rank1_correct']}/{count})\n"
        f"rank-5: {report['rank5']:.2%} ({report['rank5_correct']}/{count})"
    )
