"""Models for a data set: built from a config for a split's classes and statistics, loaded
from checkpoint files, and checked against the data they are to eat. (The network
itself is `pipeline.nn`, which knows nothing of configs, data sets or devices.)"""

import dataclasses
import zipfile
from pathlib import Path

import keras

from pipeline.config import ModelConfig
from pipeline.datasets.hdf5_reader import SplitInfo, read_mean_image
from pipeline.errors import UserError
from pipeline.nn.resnet import build_resnet
from pipeline.nn.transfer import BACKBONE_RATE_OPTIMIZERS


@dataclasses.dataclass(frozen=True)
class Statistics:
    """The input normalisation of a model: per-channel mean and std (0-255, RGB), or a
    per-pixel mean image (then divided by std when given); all None scales to [0, 1]."""

    mean: list | None
    std: list | None
    mean_image: object = None


def build_model_for_data(
    model_config: ModelConfig, info: SplitInfo, input_shape, *, statistics: Statistics | None = None
) -> keras.Model:
    """The config's ResNet for `input_shape` images and the split's classes, normalising
    with the split's statistics (or `statistics`: a fine-tuned model keeping those of
    the weights it starts from)."""
    if statistics is None:
        statistics = _statistics_of_split(model_config, info, input_shape)
    return build_resnet(
        model_config.network(),
        num_classes=info.num_classes,
        input_shape=input_shape,
        mean=statistics.mean,
        std=statistics.std,
        mean_image=statistics.mean_image,
        name=model_config.preset or "resnet",
    )


def _statistics_of_split(model_config: ModelConfig, info: SplitInfo, input_shape) -> Statistics:
    """The normalisation the config asks for, with the split's statistics."""
    if model_config.normalization != "mean_image":
        return Statistics(mean=info.mean, std=info.std)
    mean_image = read_mean_image(info.path)
    if tuple(mean_image.shape) != tuple(input_shape):
        raise UserError(
            f"the mean image of {info.path} is {mean_image.shape}, the model input "
            f"{tuple(input_shape)}; use model.normalization = 'channel'"
        )
    return Statistics(mean=info.mean, std=info.std, mean_image=mean_image)


def resolve_jit_compile(setting: bool | str) -> bool:
    """training.jit_compile as Keras takes it. "auto" compiles on JAX, where Keras' other
    path runs the step op by op: slow, and with several CPU devices in one process it can
    leave a device's collective waiting for a partner that never comes. On TensorFlow,
    "auto" keeps the plain tf.function graph; XLA there is asked for with true."""
    if setting == "auto":
        return keras.backend.backend() == "jax"
    return bool(setting)


def load_model(path: str | Path, jit_compile: bool | str = "auto") -> keras.Model:
    """Load a `.keras` checkpoint (with its optimiser state); a bad file is a UserError.

    `jit_compile` (see training.jit_compile) replaces the setting saved with the model,
    which belongs to the machine and backend that trained it."""
    path = Path(path)
    check_model_file(path)
    try:
        # The optimisers with a backbone rate (fine-tuning) are this project's own.
        model = keras.models.load_model(path, custom_objects=BACKBONE_RATE_OPTIMIZERS)
    except Exception as error:  # Keras raises many types for a damaged or foreign file.
        # Keras' messages run over many lines (a whole config at times): the first 300
        # characters, on one line.
        reason = " ".join(str(error).split())[:300]
        raise UserError(f"cannot load model {path}: {type(error).__name__}: {reason}") from None
    model.jit_compile = resolve_jit_compile(jit_compile)
    return model


def check_model_file(path: Path) -> None:
    """A one-line UserError unless `path` is a regular file holding a zip (a .keras file)."""
    if not path.exists():
        raise UserError(f"model file {path} does not exist")
    if not path.is_file():
        raise UserError(f"model file {path} is not a regular file (a folder or a device)")
    if not zipfile.is_zipfile(path):
        # Keras answers "File not found" for a file that is there but is no .keras zip.
        raise UserError(f"model file {path} is not a .keras file (not a zip archive)")


def check_model_matches_data(model: keras.Model, info: SplitInfo, model_path, image_shape) -> None:
    """Refuse a model whose class count differs from the data's, or whose input shape
    differs from `image_shape` (None: not checked)."""
    num_outputs = model.output_shape[-1]
    if num_outputs != info.num_classes:
        raise UserError(
            f"model {model_path} predicts {num_outputs} classes but {info.path} has "
            f"{info.num_classes}; use a model trained on this data set"
        )
    if image_shape is None:
        return
    expected = model.input_shape[1:]
    fits = len(expected) == len(image_shape) and all(
        size is None or size == actual for size, actual in zip(expected, image_shape, strict=True)
    )
    if not fits:
        raise UserError(
            f"model {model_path} takes images of shape {expected} but {info.path} gives "
            f"{tuple(image_shape)} (data.image_size sets the size images are cropped to)"
        )


def in_float32(model: keras.Model) -> keras.Model:
    """The model computing in float32. A mixed-precision model (trained in bfloat16 or
    float16) keeps float32 weights but computes in the half type, which converters
    (TFLite, ONNX) and serving runtimes without half kernels cannot run: its layers are
    rebuilt with the float32 policy and given the same weights. A float32 model is
    returned as it is."""
    config = model.get_config()
    if not _float32_policies(config):
        return model
    rebuilt = model.__class__.from_config(config)
    rebuilt.set_weights(model.get_weights())
    rebuilt.jit_compile = model.jit_compile  # the machine's setting, as load_model chose it
    return rebuilt


def _float32_policies(value) -> bool:
    """Set every mixed DTypePolicy in a model config to float32; True if any was."""
    changed = False
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy":
            name = value.get("config", {}).get("name", "")
            if name.startswith("mixed_"):
                value["config"]["name"] = "float32"
                return True
        for item in value.values():
            changed |= _float32_policies(item)
    elif isinstance(value, list):
        for item in value:
            changed |= _float32_policies(item)
    return changed
