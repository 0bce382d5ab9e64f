"""The sections of an experiment's config: typed, frozen dataclasses (data, model,
training, expected result) and the experiment that holds them, each checking its own
values when built (a UserError naming the key, the value and what is allowed).
"""

import dataclasses
import json
import math
from typing import Any

from pipeline.config.checks import check_rate_changes, require, require_choice
from pipeline.config.fine_tune import FineTuneConfig
from pipeline.datasets.kinds import KINDS

# Specs and presets only: pipeline.nn loads Keras when a model is built, not here.
from pipeline.nn.presets import spec_for

SCHEDULES = ("constant", "step", "multistep", "polynomial", "cosine", "plateau")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("none", "auto", "mirrored", "multiworker")


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
            require(value >= 0, f"data.{key} must be >= 0, got {value}")
        require(self.workers >= 1, f"data.workers must be >= 1, got {self.workers}")
        require_choice("data.storage", self.storage, ("auto", "memory", "disk"))
        require(
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
        require(
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
    # "auto" (mixed_bfloat16 where the hardware runs bfloat16 natively, else float32:
    # pipeline/training/precision.py), "float32", "mixed_float16" (with loss scaling) or
    # "mixed_bfloat16". A run records the precision it chose and resumes in it.
    precision: str = "auto"
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
        require(self.epochs >= 1, f"training.epochs must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, f"training.batch_size must be >= 1, got {self.batch_size}")
        require(
            self.optimizer in ("sgd", "adam", "adamw"),
            f"training.optimizer must be 'sgd', 'adam' or 'adamw', got {self.optimizer!r}",
        )
        require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"training.learning_rate must be a finite number > 0, got {self.learning_rate}",
        )
        require(0 <= self.momentum < 1, f"training.momentum must be in [0, 1), got {self.momentum}")
        require(
            self.checkpoint_every >= 1,
            f"training.checkpoint_every must be >= 1, got {self.checkpoint_every}",
        )
        require_choice("training.schedule", self.schedule, SCHEDULES)
        require_choice("training.milestone_unit", self.milestone_unit, ("epochs", "iterations"))
        require_choice("training.precision", self.precision, PRECISIONS)
        require_choice("training.distribute", self.distribute, DISTRIBUTIONS)
        require(
            isinstance(self.jit_compile, bool) or self.jit_compile == "auto",
            f"training.jit_compile must be true, false or 'auto', got {self.jit_compile!r}",
        )
        require(self.keep_last >= 0, f"training.keep_last must be >= 0, got {self.keep_last}")
        require(self.step_every > 0, f"training.step_every must be > 0, got {self.step_every}")
        self._check_ranges()
        check_rate_changes(self)

    def _check_ranges(self) -> None:
        """Every number in its range, NaN and infinity refused: a negative factor or
        minimum would train at a negative rate, silently."""
        floats = ("learning_rate", "momentum", "weight_decay", "decay_power", "decay_factor",
                  "step_every", "warmup_epochs", "min_learning_rate")  # fmt: skip
        for key in floats:
            value = getattr(self, key)
            require(math.isfinite(value), f"training.{key} must be a finite number, got {value}")
        require(
            0 < self.decay_factor <= 1,
            f"training.decay_factor must be in (0, 1], got {self.decay_factor}",
        )
        require(
            self.schedule != "plateau" or self.decay_factor < 1,
            f"training.decay_factor must be below 1 for the plateau schedule, "
            f"got {self.decay_factor}",
        )
        for key in ("weight_decay", "min_learning_rate", "warmup_epochs"):
            value = getattr(self, key)
            require(value >= 0, f"training.{key} must be >= 0, got {value}")
        require(
            self.min_learning_rate < self.learning_rate,
            f"training.min_learning_rate ({self.min_learning_rate}) must be below "
            f"training.learning_rate ({self.learning_rate})",
        )
        require(
            self.warmup_epochs <= self.epochs,
            f"training.warmup_epochs ({self.warmup_epochs}) must be at most training.epochs "
            f"({self.epochs})",
        )
        require(self.decay_power > 0, f"training.decay_power must be > 0, got {self.decay_power}")
        milestones = list(self.milestones)
        require(
            all(math.isfinite(value) and value >= 0 for value in milestones)
            and milestones == sorted(milestones),
            f"training.milestones must be finite, >= 0 and increasing, got {milestones}",
        )
        for key in ("plateau_patience", "early_stopping_patience"):
            value = getattr(self, key)
            require(value >= 0, f"training.{key} must be >= 0, got {value}")


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
            require(
                math.isfinite(value) and 0 <= value <= 1,
                f"expected.{key} must be a fraction in [0, 1] (0.9339 for 93.39%), got {value}",
            )
        spread = (self.rank_1_low, self.rank_1_high)
        if spread != (0.0, 0.0):
            require(
                self.rank_1_low <= self.rank_1 <= self.rank_1_high,
                f"expected.rank_1 {self.rank_1} must lie in its spread "
                f"[{self.rank_1_low}, {self.rank_1_high}]",
            )
        require_choice("expected.mode", self.mode, ("center", "ten_crop", "multi_scale"))
        require(
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
    fine_tune: FineTuneConfig = FineTuneConfig()
    expected: ExpectedConfig = ExpectedConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
