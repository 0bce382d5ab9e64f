"""The model a fresh run starts from: random weights, or (fine_tune.init) the backbone of a
checkpoint of this project or of Keras' ImageNet weights, with a new classifier for the
data set's classes, its normalisation, and its frozen parts.

The weights file is fingerprinted (sha256) and the run records it in config.json
(fine_tune.init_sha256) and run_info.json; a config that pins the fingerprint refuses
any other file.
"""

import dataclasses
import hashlib
from pathlib import Path

import keras
import numpy as np

from pipeline.config import ExperimentConfig, FineTuneConfig
from pipeline.config.fine_tune import KERAS_PREFIX
from pipeline.datasets.hdf5_reader import SplitInfo
from pipeline.errors import UserError
from pipeline.models import Statistics, build_model_for_data, check_model_file, load_model
from pipeline.nn import keras_weights
from pipeline.nn.presets import PRESETS
from pipeline.nn.transfer import copy_backbone, freeze, with_backbone_rate

__all__ = ["InitialModel", "initial_model", "with_backbone_rate"]

# The fields of a network that its weights depend on (l2, the initializer and the
# source do not change what trained weights compute).
_SHAPING_FIELDS = ("block", "stages", "filters", "stem", "preactivation", "shortcut",
                   "project_every_stage", "stem_padding", "bn_epsilon")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class InitialModel:
    """A fresh run's model, the fine_tune section as the run records it, and what was
    done, in words (for train.log)."""

    model: keras.Model
    fine_tune: FineTuneConfig
    notes: tuple[str, ...] = ()


def initial_model(config: ExperimentConfig, info: SplitInfo, input_shape) -> InitialModel:
    """The model a fresh run of `config` trains, for `info`'s classes and images."""
    fine_tune = config.fine_tune
    if not fine_tune.init:
        return InitialModel(build_model_for_data(config.model, info, input_shape), fine_tune)
    # The file is checked and fingerprinted before the (slow) load.
    path = _keras_weights_path(config) if fine_tune.from_keras else Path(fine_tune.init)
    if not fine_tune.from_keras:
        check_model_file(path)
    digest = _checked_digest(path, fine_tune)
    if fine_tune.from_keras:
        source, statistics = _keras_source(fine_tune.init[len(KERAS_PREFIX) :], path)
    else:
        source = load_model(path)
        statistics = _statistics_of(source)
    kept = fine_tune.normalization == "checkpoint"
    model = build_model_for_data(
        config.model, info, input_shape, statistics=statistics if kept else None
    )
    if fine_tune.from_keras:
        keras_weights.copy_keras_weights(source, model, include_head=False)
    else:
        copy_backbone(source, model, f"fine_tune.init {path}")
    del source  # the checkpoint's model (and its optimizer state) is not kept
    frozen = freeze(model, fine_tune.freeze)
    notes = [
        f"fine-tuning from {fine_tune.init} (sha256 {digest[:16]}...): every layer up to the "
        f"classifier, a new classifier for {info.num_classes} classes, the "
        f"{'checkpoint' if kept else 'data set'}'s normalisation"
    ]
    if frozen:
        notes.append(f"frozen: {', '.join(fine_tune.freeze)} ({len(frozen)} layers)")
    if fine_tune.backbone_rate_scale != 1:
        notes.append(
            f"every layer but the classifier trains at {fine_tune.backbone_rate_scale:g} "
            f"times the rate"
        )
    recorded = dataclasses.replace(fine_tune, init_sha256=digest)
    return InitialModel(model, recorded, tuple(notes))


def _statistics_of(model: keras.Model) -> Statistics:
    """The normalisation a model of pipeline/nn/resnet.py applies to its input."""
    layers = {layer.name: layer for layer in model.layers}
    mean_image = None
    if "subtract_mean_image" in layers:
        mean_image = keras.ops.convert_to_numpy(layers["subtract_mean_image"].mean_image)
    normalize = layers.get("normalize")
    if isinstance(normalize, keras.layers.Normalization):
        mean = np.ravel(keras.ops.convert_to_numpy(normalize.mean)).tolist()
        std = np.sqrt(np.ravel(keras.ops.convert_to_numpy(normalize.variance))).tolist()
        if mean_image is not None:
            return Statistics(mean=None, std=std, mean_image=mean_image)
        return Statistics(mean=mean, std=std, mean_image=None)
    return Statistics(mean=None, std=None, mean_image=mean_image)


def _keras_weights_path(config: ExperimentConfig) -> Path:
    """The file of Keras' ImageNet weights that fine_tune.init names (keras:resnet50), once
    the config is seen to train the network they fit."""
    name = config.fine_tune.init[len(KERAS_PREFIX) :]
    preset = keras_weights.preset_for(name)
    wanted, given = PRESETS[preset], config.model.network()
    differing = [name for name in _SHAPING_FIELDS if getattr(wanted, name) != getattr(given, name)]
    if differing:
        raise UserError(
            f"fine_tune.init {config.fine_tune.init} fits model.preset = {preset!r}, but this "
            f"config's network differs in {', '.join(differing)}: set model.preset = {preset!r}"
        )
    path = keras_weights.weights_file(name)
    keras_weights.check_keras_file(path, name)
    return path


def _keras_source(name: str, path: Path):
    """Keras' network `name` with the weights of `path`, and the normalisation they expect."""
    include_top = not path.name.endswith("_notop.h5")
    source = keras_weights.keras_application(name, include_top=include_top, weights_path=path)
    mean = list(keras_weights.IMAGENET_MEAN_RGB)
    return source, Statistics(mean=mean, std=[1.0, 1.0, 1.0], mean_image=None)


def _checked_digest(path: Path, fine_tune: FineTuneConfig) -> str:
    """The file's sha256, which must be the one the config pins (when it pins one)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    found = digest.hexdigest()
    if fine_tune.init_sha256 and fine_tune.init_sha256 != found:
        raise UserError(
            f"fine_tune.init {path} has sha256 {found}, but the config pins "
            f"fine_tune.init_sha256 = {fine_tune.init_sha256!r}: another file than the run's"
        )
    return found
