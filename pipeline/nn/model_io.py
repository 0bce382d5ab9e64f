"""Models from a config, models from checkpoint files, and the check that a model fits the data."""

from pathlib import Path

import keras

from pipeline.config import ModelConfig
from pipeline.datasets.hdf5_format import SplitInfo
from pipeline.errors import UserError
from pipeline.nn.resnet import build_resnet


def build_model_for_data(model_config: ModelConfig, info: SplitInfo, input_shape) -> keras.Model:
    """The config's ResNet for `input_shape` images and the split's classes and statistics."""
    return build_resnet(
        input_shape=input_shape,
        num_classes=info.num_classes,
        mean=info.mean,
        std=info.std,
        stages=model_config.stages,
        filters=model_config.filters,
        l2=model_config.l2,
        bn_epsilon=model_config.bn_epsilon,
        bn_momentum=model_config.bn_momentum,
    )


def load_model(path: str | Path) -> keras.Model:
    """Load a `.keras` checkpoint (with its optimiser state); a bad file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a damaged or foreign file.
        raise UserError(f"cannot load model {path}: {type(error).__name__}: {error}") from None


def check_model_matches_data(model: keras.Model, info: SplitInfo, model_path, image_shape) -> None:
    """Refuse a model whose class count or input shape differs from the data's."""
    num_outputs = model.output_shape[-1]
    if num_outputs != info.num_classes:
        raise UserError(
            f"model {model_path} predicts {num_outputs} classes but {info.path} has "
            f"{info.num_classes}; use a model trained on this data set"
        )
    expected = model.input_shape[1:]
    fits = len(expected) == len(info.image_shape) and all(
        size is None or size == actual
        for size, actual in zip(expected, info.image_shape, strict=True)
    )
    if not fits:
        raise UserError(
            f"model {model_path} takes images of shape {expected} but {info.path} holds "
            f"{info.image_shape}"
        )
