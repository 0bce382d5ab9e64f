"""Experiment configuration: typed, frozen dataclasses loaded from TOML presets in config/.

A preset file sets any subset of the fields below; command-line overrides
(`section.key=value`) are applied on top; an unknown key or a value of the wrong
type is a UserError. The resolved config is saved in every run directory.
"""

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.datasets.kinds import KINDS
from pipeline.errors import UserError

# Specs and presets only: pipeline.nn loads Keras when a model is built, not here.
from pipeline.nn.presets import spec_for

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "digits.toml"
# A preset or a run's config.json is a few KiB: a larger file is refused unread.
MAX_CONFIG_BYTES = 4 * 1024**2


# The settings that shape the curve; a change's `before` holds those of the segment
# that ended at it, where they differ from the segment that follows.
CURVE_KEYS = (
    "schedule", "learning_rate", "epochs", "decay_power", "decay_factor", "step_every",
    "milestones", "milestone_unit", "warmup_epochs", "min_learning_rate",
)  # fmt: skip


SCHEDULES = ("constant", "step", "multistep", "polynomial", "cosine", "plateau")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("none", "auto", "mirrored", "multiworker")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _choice(key: str, value: str, allowed) -> None:
    _require(value in allowed, f"{key} must be one of {', '.join(allowed)}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the HDF5 splits live (a directory holding train.h5, val.h5, test.h5)."""

    dataset_dir: str = "output/datasets/digits"
    # The kind of data set the experiment trains on (a name of build_dataset.py --dataset:
    # pipeline/datasets/kinds.py) and its class count; training refuses splits of another
    # kind or count. "" and 0: not stated, not checked.
    dataset: str = ""
    num_classes: int = 0
    # Size that JPEG-encoded splits are decoded to (shorter side, centre crop);
    # 0 for splits stored as pixels, which are used at their stored size.
    image_size: int = 0
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    # Train-time augmentations, in order: [{name = "pad_crop", pad = 4}, {name = "flip"}]
    # (pipeline/io/augment.py lists them and their options).
    augment: tuple[dict, ...] = ()
    # "auto", "memory" or "disk" (out of core, for splits larger than RAM).
    storage: str = "auto"
    # Out of core: samples mixed within one shuffle window (0: about 256 MiB of images).
    shuffle_buffer: int = 0
    # Loader threads (Keras PyDataset workers); 1 loads in the training thread.
    workers: int = 1

    def __post_init__(self) -> None:
        for key in ("image_size", "shuffle_buffer", "num_classes"):
            value = getattr(self, key)
            _require(value >= 0, f"data.{key} must be >= 0, got {value}")
        _require(self.workers >= 1, f"data.workers must be >= 1, got {self.workers}")
        _choice("data.storage", self.storage, ("auto", "memory", "disk"))
        _require(
            self.dataset in ("", *KINDS),
            f'data.dataset must be one of {", ".join(KINDS)} (or "" for no check), '
            f"got {self.dataset!r}",
        )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: a preset of pipeline.nn.PRESETS and/or the fields of a ResNetSpec.

    With a preset, `spec` overrides some of its fields ({l2 = 1e-4}); without
    one, `spec` describes the whole network (block, stages, filters, ...).
    Checked at load (pipeline.nn's specs load no framework); an empty model section
    is refused when the model is built, since a saved run always names its network.
    """

    preset: str = ""
    spec: dict = dataclasses.field(default_factory=dict)
    # "channel": per-channel mean/std of the train split; "mean_image": subtract
    # its per-pixel mean image (the papers' CIFAR input), then divide by the std.
    normalization: str = "channel"

    def __post_init__(self) -> None:
        _require(
            self.normalization in ("channel", "mean_image"),
            f"model.normalization must be 'channel' or 'mean_image', got {self.normalization!r}",
        )
        if self.preset or self.spec:
            self.network()

    def network(self):
        """The ResNetSpec this section describes (a UserError for an unknown preset, an
        unknown or missing field or an invalid value)."""
        return spec_for(self.preset, self.spec)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, schedule, checkpointing and the machinery around the fit."""

    epochs: int = 20
    # The global batch; with several replicas each takes batch_size / replicas.
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd", "adam" or "adamw"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    # AdamW's decoupled weight decay (the other optimisers use the model's L2).
    weight_decay: float = 0.0
    # "constant" (the ctrl+c way), "step", "multistep", "polynomial", "cosine", "plateau".
    schedule: str = "constant"
    # polynomial: lr * (1 - epoch / epochs) ** decay_power (train_decay.py)
    decay_power: float = 1.0
    # step and multistep: multiply by decay_factor every step_every epochs / at each milestone.
    decay_factor: float = 0.1
    step_every: float = 30.0
    milestones: tuple[float, ...] = ()
    milestone_unit: str = "epochs"  # or "iterations" (the paper: 32000, 48000)
    # cosine: linear warm-up over warmup_epochs, then down to min_learning_rate.
    warmup_epochs: float = 0.0
    min_learning_rate: float = 0.0
    # plateau: multiply by decay_factor when plateau_monitor stalls for plateau_patience epochs.
    plateau_monitor: str = "val_loss"
    plateau_patience: int = 5
    # The --lr changes of a resumed run, recorded by train.py: [{epoch = 13, batch = 5,
    # rate = 0.01}] trains at 0.01 from batch 6 of epoch 14 (13 epochs and 5 batches
    # done), the rest of the schedule rescaled to start there (pipeline/runs/learning_rate.py).
    rate_changes: tuple[dict, ...] = ()
    # Stop when early_stopping_monitor stalls this many epochs (0: never).
    early_stopping_patience: int = 0
    early_stopping_monitor: str = "val_loss"
    checkpoint_every: int = 5
    # Keep only the newest keep_last epoch checkpoints (0: keep all).
    keep_last: int = 0
    # Also keep best.keras, the checkpoint with the best value of this metric ("" : off).
    best_metric: str = ""
    tensorboard: bool = False
    # "float32", "mixed_float16" or "mixed_bfloat16".
    precision: str = "float32"
    # "auto": compiled with XLA on JAX (Keras' JAX path without it runs op by op), a plain
    # graph on TensorFlow; true: XLA on TensorFlow too; false: JAX op by op (debugging).
    jit_compile: bool | str = "auto"
    # Same weights from the same config on the same machine (slower on GPUs).
    deterministic: bool = False
    # "none", "auto" or "mirrored" (several GPUs; DataParallel on JAX); "multiworker":
    # one process per machine, joined through TF_CONFIG, on the JAX backend (Keras 3's
    # fit fails with it on TensorFlow: keras-team/keras#20585).
    distribute: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"training.epochs must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"training.batch_size must be >= 1, got {self.batch_size}")
        _require(
            self.optimizer in ("sgd", "adam", "adamw"),
            f"training.optimizer must be 'sgd', 'adam' or 'adamw', got {self.optimizer!r}",
        )
        _require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"training.learning_rate must be a finite number > 0, got {self.learning_rate}",
        )
        _require(
            0 <= self.momentum < 1, f"training.momentum must be in [0, 1), got {self.momentum}"
        )
        _require(
            self.checkpoint_every >= 1,
            f"training.checkpoint_every must be >= 1, got {self.checkpoint_every}",
        )
        _choice("training.schedule", self.schedule, SCHEDULES)
        _choice("training.milestone_unit", self.milestone_unit, ("epochs", "iterations"))
        _choice("training.precision", self.precision, PRECISIONS)
        _choice("training.distribute", self.distribute, DISTRIBUTIONS)
        _require(
            isinstance(self.jit_compile, bool) or self.jit_compile == "auto",
            f"training.jit_compile must be true, false or 'auto', got {self.jit_compile!r}",
        )
        _require(self.keep_last >= 0, f"training.keep_last must be >= 0, got {self.keep_last}")
        _require(self.step_every > 0, f"training.step_every must be > 0, got {self.step_every}")
        self._check_ranges()
        _check_rate_changes(self)

    def _check_ranges(self) -> None:
        """Every number in its range, NaN and infinity refused: a negative factor or
        minimum would train at a negative rate, silently."""
        floats = ("learning_rate", "momentum", "weight_decay", "decay_power", "decay_factor",
                  "step_every", "warmup_epochs", "min_learning_rate")  # fmt: skip
        for key in floats:
            value = getattr(self, key)
            _require(math.isfinite(value), f"training.{key} must be a finite number, got {value}")
        _require(
            0 < self.decay_factor <= 1,
            f"training.decay_factor must be in (0, 1], got {self.decay_factor}",
        )
        _require(
            self.schedule != "plateau" or self.decay_factor < 1,
            f"training.decay_factor must be below 1 for the plateau schedule, "
            f"got {self.decay_factor}",
        )
        for key in ("weight_decay", "min_learning_rate", "warmup_epochs"):
            value = getattr(self, key)
            _require(value >= 0, f"training.{key} must be >= 0, got {value}")
        _require(
            self.min_learning_rate < self.learning_rate,
            f"training.min_learning_rate ({self.min_learning_rate}) must be below "
            f"training.learning_rate ({self.learning_rate})",
        )
        _require(
            self.warmup_epochs <= self.epochs,
            f"training.warmup_epochs ({self.warmup_epochs}) must be at most training.epochs "
            f"({self.epochs})",
        )
        _require(self.decay_power > 0, f"training.decay_power must be > 0, got {self.decay_power}")
        milestones = list(self.milestones)
        _require(
            all(math.isfinite(value) and value >= 0 for value in milestones)
            and milestones == sorted(milestones),
            f"training.milestones must be finite, >= 0 and increasing, got {milestones}",
        )
        for key in ("plateau_patience", "early_stopping_patience"):
            value = getattr(self, key)
            _require(value >= 0, f"training.{key} must be >= 0, got {value}")


def _check_rate_changes(training: "TrainingConfig") -> None:
    """Each change is {epoch, batch, rate} with a finite rate > 0, in increasing positions."""
    previous, befores = None, []
    for change in training.rate_changes:
        shown = f"training.rate_changes entry {change!r}"
        _require(
            isinstance(change, dict) and set(change) - {"before"} == {"epoch", "batch", "rate"},
            f"{shown} must be a table with exactly the keys epoch, batch and rate (and before)",
        )
        befores.append(_settings_before(change["before"], shown) if "before" in change else {})
        epoch, batch, rate = change["epoch"], change["batch"], change["rate"]
        _require(
            all(isinstance(value, int) and not isinstance(value, bool) for value in (epoch, batch))
            and epoch >= 0
            and batch >= 0,
            f"{shown}: epoch and batch must be whole numbers >= 0",
        )
        _require(
            isinstance(rate, int | float)
            and not isinstance(rate, bool)
            and math.isfinite(rate)
            and rate > 0,
            f"{shown}: rate must be a finite number > 0",
        )
        _require(
            previous is None or (epoch, batch) > previous,
            f"{shown} must come after the change before it",
        )
        previous = (epoch, batch)
    starts_at_zero = training.schedule == "cosine" and training.warmup_epochs > 0
    _require(
        not (starts_at_zero and previous is not None and training.rate_changes[0]["epoch"] == 0
             and training.rate_changes[0]["batch"] == 0),
        "training.rate_changes: a change at epoch 0, batch 0 of a warm-up has nothing to "
        "rescale; set training.learning_rate instead",
    )  # fmt: skip
    _check_segments(training, befores)


def _settings_before(before, shown: str) -> dict:
    """A change's `before` (the curve settings of the segment that ended at it), each of
    its type; their ranges are checked with the segment's (`_check_segments`)."""
    _require(
        isinstance(before, dict) and before and set(before) <= set(CURVE_KEYS),
        f"{shown}: before must be a table of some of {', '.join(CURVE_KEYS)}",
    )
    hints = typing.get_type_hints(TrainingConfig)
    return {
        key: _coerce(hints[key], value, f"before.{key}", shown) for key, value in before.items()
    }


def _check_segments(training: "TrainingConfig", befores: list[dict]) -> None:
    """The settings of every segment of the curve, as the changes rebuild them (the
    nearest later change recording a setting gives it), make a valid config: each
    segment trained once with them."""
    for index in range(len(befores)):
        values = {}
        for before in reversed(befores[index:]):
            values.update(before)
        if not values:
            continue
        try:
            # Without rate_changes: their own check would come back here.
            dataclasses.replace(training, rate_changes=(), **values)
        except UserError as error:
            entry = training.rate_changes[index]
            raise UserError(
                f"training.rate_changes: the curve before entry {entry!r} is not valid: {error}"
            ) from None


@dataclasses.dataclass(frozen=True)
class ExpectedConfig:
    """The result a preset should reach, as data: rank_accuracy.py puts the measured
    figures beside it. Fractions (0.9339 is 93.39%); 0 where the source gives none.

    `rank_1` is the figure to compare with (a mean over runs where the source gives
    one); `rank_1_low` .. `rank_1_high` the spread the source reports (e.g. mean - std ..
    its best run), both 0 when it reports a single run.
    """

    rank_1: float = 0.0
    rank_1_low: float = 0.0
    rank_1_high: float = 0.0
    rank_5: float = 0.0
    # The split and evaluation mode the figures are for: others are not compared.
    split: str = "test"
    mode: str = "center"
    # Where the figures come from: a paper's table, a reference run, this project's runs.
    source: str = ""

    def __post_init__(self) -> None:
        for key in ("rank_1", "rank_1_low", "rank_1_high", "rank_5"):
            value = getattr(self, key)
            _require(
                math.isfinite(value) and 0 <= value <= 1,
                f"expected.{key} must be a fraction in [0, 1] (0.9339 for 93.39%), got {value}",
            )
        spread = (self.rank_1_low, self.rank_1_high)
        if spread != (0.0, 0.0):
            _require(
                self.rank_1_low <= self.rank_1 <= self.rank_1_high,
                f"expected.rank_1 {self.rank_1} must lie in its spread "
                f"[{self.rank_1_low}, {self.rank_1_high}]",
            )
        _choice("expected.mode", self.mode, ("center", "ten_crop", "multi_scale"))
        _require(
            not self.rank_1 or self.source,
            "expected.source must say where the expected figures come from",
        )

    @property
    def stated(self) -> bool:
        return self.rank_1 > 0


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: data, model and training, plus where its run directory goes."""

    name: str = "digits"
    description: str = ""
    # The run directory: checkpoints, history.json, plots and the resolved config.
    checkpoints: str = "output/checkpoints"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    expected: ExpectedConfig = ExpectedConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a TOML preset or a saved config.json (the default preset when path is None) and
    apply `key=value` overrides."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; presets are in {CONFIG_DIR}")
    with open(path, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"config file {path} is over {MAX_CONFIG_BYTES} bytes; not a config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not UTF-8 text ({error.reason})") from None
    try:
        # A run directory's config.json (the resolved config) reads like a preset.
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"config file {path} is not valid: {error}") from None
    except RecursionError:
        raise UserError(f"config file {path} is not valid: nested too deep") from None
    if not isinstance(values, Mapping):
        raise UserError(f"config file {path} is not valid: not a table (JSON object)")
    return config_from_values(values, overrides, source=str(path))


def config_from_values(values: Mapping[str, Any], overrides: Iterable[str] = (), source="config"):
    """The config of a nested mapping (a checkpoint's saved config) with overrides applied."""
    values = json.loads(json.dumps(values))  # a deep copy the overrides may change
    for override in overrides:
        _apply_override(values, override, source)
    return config_from_dict(ExperimentConfig, values, source=source)


def config_from_dict(cls: type, values: Mapping[str, Any], source: str = "config", prefix=""):
    """Build dataclass `cls` from a nested mapping; unknown keys and wrong types are UserErrors."""
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    arguments = {}
    for key, value in values.items():
        full_key = f"{prefix}{key}"
        if key not in known:
            raise UserError(
                f"unknown config key '{full_key}' in {source}; "
                f"known keys here: {', '.join(sorted(prefix + name for name in known))}"
            )
        arguments[key] = _coerce(hints[key], value, full_key, source)
    return cls(**arguments)


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise UserError(f"config key '{key}' in {source} must be a table, got {value!r}")
        return config_from_dict(hint, value, source, prefix=f"{key}.")
    origin = typing.get_origin(hint)
    if origin is types.UnionType:
        # `bool | str` and the like: the value is checked against each member, as written.
        if not isinstance(value, typing.get_args(hint)):
            names = " or ".join(member.__name__ for member in typing.get_args(hint))
            raise UserError(
                f"config key '{key}' in {source} must be of type {names}, got {value!r}"
            )
        return value
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise UserError(f"config key '{key}' in {source} must be a list, got {value!r}")
        return tuple(_coerce(item_type, item, key, source) for item in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is a subclass of int: refuse `epochs = true` explicitly.
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise UserError(
            f"config key '{key}' in {source} must be of type {hint.__name__}, got {value!r}"
        )
    return value


def _apply_override(values: dict[str, Any], override: str, source: str = "config") -> None:
    """Apply one `section.key=value` override; the value is read as TOML, else as a string."""
    key, separator, raw_value = override.partition("=")
    if not separator or not key.strip():
        raise UserError(f"override {override!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"value = {raw_value}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    *sections, leaf = key.strip().split(".")
    table = values
    for section in sections:
        table = table.setdefault(section, {})
        if not isinstance(table, dict):
            raise UserError(
                f"override {override!r}: '{section}' is not a section in {source} "
                f"(got {table!r:.60})"
            )
    table[leaf] = value
