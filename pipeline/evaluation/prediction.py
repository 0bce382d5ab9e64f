"""Top-k classes of image files, for users who want to try their model."""

import dataclasses
from pathlib import Path

import numpy as np

from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.hdf5_reader import read_split_info
from pipeline.datasets.image_folders import files_under
from pipeline.datasets.images import (
    BadImage,
    center_crop,
    read_image_file,
    resize_and_center_crop,
)
from pipeline.errors import UserError
from pipeline.runs.checkpoint_files import read_state

BATCH = 64


@dataclasses.dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), best first


def image_paths(target) -> list[str]:
    """The file itself, or every file below a folder."""
    target = Path(target)
    if target.is_dir():
        paths = files_under(target)
        if not paths:
            raise UserError(f"{target} holds no files")
        return paths
    if not target.is_file():
        raise UserError(f"{target} is neither an image file nor a folder")
    return [str(target)]


def class_names_for(model_path, num_classes: int, dataset=None) -> list[str]:
    """Names from the checkpoint's state file, else from a data set, else the class ids."""
    names = read_state(model_path).get("class_names")
    if names is None and dataset is not None:
        names = list(read_split_info(split_path(dataset, "train")).class_names)
    names = names or [str(index) for index in range(num_classes)]
    if len(names) != num_classes:
        raise UserError(f"{len(names)} class names for a model of {num_classes} classes")
    return names


def stored_side(model_path, dataset=None) -> int | None:
    """The side of the square images the model was trained on before its crop (raw splits
    are stored resized to it), from --dataset or the checkpoint's own config."""
    config = read_state(model_path).get("config", {})
    dataset = dataset or config.get("data", {}).get("dataset_dir")
    if not dataset or not split_path(dataset, "train").is_file():
        return None
    shape = read_split_info(split_path(dataset, "train")).image_shape
    return shape[0] if shape else None


def predict_files(model, paths, class_names, *, top: int = 5, side: int | None = None):
    """Predictions for the usable images; (path, reason) for the skipped ones.

    Each image is seen as in evaluation: shorter side to `side` (the stored size)
    and centre-cropped to the model's input; without `side`, straight to the input.
    """
    size = model.input_shape[1]
    predictions, skipped, pending = [], [], []
    for index, path in enumerate(paths):
        try:
            _data, image = read_image_file(path)
        except BadImage as error:
            skipped.append((path, error.reason))
        else:
            pending.append((path, _view(image, size, side)))
        if len(pending) == BATCH or (index == len(paths) - 1 and pending):
            predictions += _predict_batch(model, pending, class_names, top)
            pending = []
    return predictions, skipped


def _view(image, size, side):
    if not size:
        return image
    if side and side > size:
        return center_crop(resize_and_center_crop(image, side), size, size)
    return resize_and_center_crop(image, size)


def _predict_batch(model, pending, class_names, top):
    if model.input_shape[1] is None:
        # A fully-convolutional model takes each image at its own size.
        scores = [np.asarray(model.predict_on_batch(image[None]))[0] for _, image in pending]
    else:
        scores = np.asarray(model.predict_on_batch(np.stack([image for _, image in pending])))
    results = []
    for (path, _image), row in zip(pending, scores, strict=True):
        best = np.argsort(row)[::-1][:top]
        results.append(Prediction(path, [(class_names[i], float(row[i])) for i in best]))
    return results
