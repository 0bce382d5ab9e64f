"""Rank-1 / rank-5 accuracy of a model over every sample of a split."""

from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from pipeline.datasets.hdf5_reader import read_split_info
from pipeline.errors import UserError
from pipeline.evaluation.crops import NUM_TEN_CROPS, resize_shorter_sides, ten_crops
from pipeline.evaluation.reports import (
    classification_summary,
    file_fingerprint,
    most_confused_pairs,
    per_class_figures,
    plot_confusion,
)
from pipeline.io import HDF5DatasetGenerator, LoaderOptions
from pipeline.models import check_model_matches_data, load_model
from pipeline.nn.layers import SubtractMeanImage
from pipeline.runs.checkpoint_files import read_state
from pipeline.runs.json_files import strict_json
from pipeline.runs.run_info import fingerprint

MODES = ("center", "ten_crop", "multi_scale")
# Report entries kept for pictures but not written to the JSON.
ARRAYS = ("predictions", "labels")


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


def predict_split(
    model, generator: HDF5DatasetGenerator, *, mode: str = "center", crop_size=None, scales=()
) -> np.ndarray:
    """Class probabilities for every sample of an unshuffled generator, in file order.

    center: the generator's images as they are (centre-cropped to the model's size).
    ten_crop: the four corners and the centre of `crop_size`, each mirrored; the ten
    score vectors are averaged. multi_scale: the whole image with its shorter side
    at each of `scales`, through a fully-convolutional copy of the model; the score
    vectors are averaged. Scores are averaged, never accuracies.
    """
    if generator.shuffle:
        raise ValueError("evaluation needs an unshuffled generator (shuffle=False)")
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    network = fully_convolutional(model) if mode == "multi_scale" else model
    batches = []
    for index in tqdm(range(len(generator)), desc=f"evaluating ({mode})", unit="batch"):
        images, _labels = generator[index]
        if mode == "ten_crop":
            crops = ten_crops(images, crop_size)
            scores = _predict(network, crops.reshape(-1, *crops.shape[2:]), len(images))
            batches.append(scores.reshape(NUM_TEN_CROPS, len(images), -1).mean(axis=0))
        elif mode == "multi_scale":
            scored = [
                _predict(network, resize_shorter_sides(images, scale), len(images))
                for scale in scales
            ]
            batches.append(np.mean(scored, axis=0))
        else:
            batches.append(_predict(network, images, len(images)))
    return np.concatenate(batches)


def _predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Scores of `images` in slices of `batch_size` (10 crops of a batch are ten batches)."""
    return np.concatenate(
        [
            np.asarray(model.predict_on_batch(images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
    )


def fully_convolutional(model):
    """A copy of `model` that takes images of any size (same weights)."""
    if any(isinstance(layer, SubtractMeanImage) for layer in model.layers):
        raise UserError(
            "multi-scale evaluation needs a model that normalises per channel; this one "
            "subtracts a fixed-size mean image"
        )
    inputs = keras.Input(shape=(None, None, model.input_shape[-1]), name="image")
    copy = keras.models.clone_model(model, input_tensors=inputs)
    copy.set_weights(model.get_weights())
    return copy


def evaluate(
    model_path, split_file, *, batch_size: int = 256, mode: str = "center", scales=()
) -> dict:
    """Rank-1/rank-5 over every sample of a split, overall and per class, with the
    classification report, the most confused pairs and the fingerprints of model and data."""
    info = read_split_info(split_file)
    check_class_names(model_path, info)
    model = load_model(model_path)
    crop_size = model.input_shape[1]
    if mode == "multi_scale" and not scales:
        raise UserError("multi-scale evaluation needs --scales, e.g. 224,256,384,480,640")
    if mode == "ten_crop" and not crop_size:
        raise UserError(f"10-crop needs a model with a fixed input size; {model_path} takes any")
    generator = HDF5DatasetGenerator(
        split_file,
        LoaderOptions(
            batch_size=min(batch_size, info.num_samples),
            shuffle=False,
            image_size=serving_size(info, mode, crop_size, scales),
        ),
    )
    # The other modes make their own views of the stored images.
    shape = generator.image_shape if mode == "center" else None
    check_model_matches_data(model, info, model_path, shape)
    probabilities = predict_split(model, generator, mode=mode, crop_size=crop_size, scales=scales)
    labels = generator.labels()
    return build_report(probabilities, labels, info, model_path, split_file, mode, scales)


def check_class_names(model_path, info) -> None:
    """Refuse data whose class names differ from those the model was trained on (its state
    records them): the same count in another order would score a silent mislabelling."""
    trained = read_state(model_path).get("class_names")
    if trained is None or list(trained) == list(info.class_names):
        return
    if len(trained) != len(info.class_names):
        raise UserError(
            f"model {model_path} was trained on {len(trained)} classes but {info.path} has "
            f"{info.num_classes}; score the data set it was trained on (--dataset)"
        )
    pairs = enumerate(zip(trained, info.class_names, strict=True))
    index = next(i for i, (ours, theirs) in pairs if ours != theirs)
    raise UserError(
        f"model {model_path} was trained with class {index} named {trained[index]!r}, but "
        f"{info.path} names it {info.class_names[index]!r}; score the data set it was "
        f"trained on (--dataset)"
    )


def serving_size(info, mode: str, crop_size, scales):
    """The size (shorter side, centre square) the generator brings images to; None: as stored."""
    if info.encoding == "jpeg":
        if mode == "center":
            return crop_size
        # 10 crops of 224 come from a shorter side of 256, the usual ratio; multi-scale
        # decodes at the largest scale and resizes down from there.
        return round(crop_size * 256 / 224) if mode == "ten_crop" else max(scales)
    smallest_side = min(info.image_shape[:2])
    if mode == "center":
        return crop_size if crop_size and smallest_side > crop_size else None
    if mode == "ten_crop" and smallest_side <= crop_size:
        # At the model's own size the four corners and the centre are one view: the
        # "ten crops" would be the image and its mirror, five times over.
        height, width = info.image_shape[:2]
        raise UserError(
            f"10-crop needs stored images larger than the model input "
            f"{crop_size}x{crop_size}; {info.path} holds {height}x{width}, so its ten crops "
            f"would be the image and its mirror: use --mode center"
        )
    return None


def build_report(probabilities, labels, info, model_path, split_file, mode, scales) -> dict:
    """The JSON report: headline figures, per class, classification report, fingerprints."""
    rank1_hits = rank_k_hits(probabilities, labels, 1)
    rank5_hits = rank_k_hits(probabilities, labels, 5)
    predictions = probabilities.argmax(axis=1)
    report_text, report_dict = classification_summary(labels, predictions, info.class_names)
    state = read_state(model_path)
    return {
        "model": str(model_path),
        # Completed epochs, and batches of the next (an interrupt), of the checkpoint.
        "model_position": {"epoch": state.get("epoch"), "batch": state.get("batch")},
        "dataset": str(split_file),
        "split": info.split,
        "mode": mode,
        "scales": list(scales),
        "num_samples": int(len(labels)),
        "num_classes": info.num_classes,
        "rank1": float(rank1_hits.mean()),
        # With 5 classes or fewer every sample is a rank-5 hit: not a figure (None).
        "rank5": float(rank5_hits.mean()) if info.num_classes > 5 else None,
        "rank1_correct": int(rank1_hits.sum()),
        "rank5_correct": int(rank5_hits.sum()) if info.num_classes > 5 else None,
        "per_class": per_class_figures(rank1_hits, rank5_hits, labels, info.class_names),
        "most_confused": most_confused_pairs(labels, predictions, info.class_names),
        "classification_report": report_dict,
        "classification_report_text": report_text,
        "model_fingerprint": file_fingerprint(model_path),
        "data_fingerprint": fingerprint(split_file),
        "predictions": predictions,
        "labels": labels,
    }


def write_report(report: dict, path: str | Path) -> Path:
    """The report as JSON (the arrays of predictions and labels left out)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    serialisable = {key: value for key, value in report.items() if key not in ARRAYS}
    path.write_text(strict_json(serialisable, path) + "\n")
    return path


def confusion_title(report: dict) -> str:
    """What the confusion picture shows: the model, the split, the mode and the rank-1."""
    return (
        f"{Path(report['model']).name} on the {report['split']} split of "
        f"{Path(report['dataset']).parent.name} ({report['mode']}): rank-1 "
        f"{report['rank1']:.2%} of {report['num_samples']}"
    )


def write_confusion(report: dict, path, class_names) -> Path:
    """The confusion picture, titled with confusion_title."""
    title = confusion_title(report)
    return plot_confusion(report["labels"], report["predictions"], class_names, path, title)


def _describe_position(position: dict) -> str:
    epoch, batch = position.get("epoch"), position.get("batch")
    if epoch is None:
        return ""
    return f" (epoch {epoch + 1}, after batch {batch})" if batch else f" (after epoch {epoch})"


def format_report(report: dict) -> str:
    """The headline figures and the most confused pairs, for the console."""
    count = report["num_samples"]
    mode = report["mode"] + (f" {report['scales']}" if report["scales"] else "")
    lines = [
        f"model: {report['model']}{_describe_position(report.get('model_position') or {})}",
        f"data: {report['dataset']} ({report['split']} split, {count} samples)",
        f"mode: {mode}",
        f"rank-1: {report['rank1']:.2%} ({report['rank1_correct']}/{count})",
        (
            f"rank-5: {report['rank5']:.2%} ({report['rank5_correct']}/{count})"
            if report["rank5"] is not None
            else f"rank-5: not reported ({report['num_classes']} classes: every sample is a hit)"
        ),
    ]
    if report["most_confused"]:
        pairs = ", ".join(
            f"{pair['true']} -> {pair['predicted']} ({pair['count']})"
            for pair in report["most_confused"][:5]
        )
        lines.append(f"most confused: {pairs}")
    return "\n".join(lines)
