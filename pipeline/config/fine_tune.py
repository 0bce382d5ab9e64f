"""The fine_tune section: a run that starts from trained weights (train.py --init)."""

import dataclasses
import math
import re

from pipeline.config.checks import require

# What training.freeze may name: the stem, a stage, or everything but the classifier.
FREEZABLE = re.compile(r"stem|stage[1-9][0-9]*|backbone")
# --init keras:NAME takes Keras' ImageNet weights (pipeline/nn/keras_weights.py).
KERAS_PREFIX = "keras:"


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """Where a fresh run's weights come from, and how the new network trains.

    - `init`: "" (random weights), the path of a `.keras` checkpoint of this project
      (trained on any data set), or "keras:resnet50" (101, 152: Keras' ImageNet
      weights). The layers up to the classifier are taken; a new classifier is made for
      this data set's classes. Read only when a run starts: a resume goes on from its
      own checkpoints.
    - `normalization`: "data" (this data set's statistics) or "checkpoint" (those the
      weights were trained with).
    - `freeze`: parts that do not train: "stem", "stage1", "stage2", ... or "backbone"
      (all but the classifier). Their BatchNormalization layers keep their statistics.
    - `backbone_rate_scale`: the rate of every layer but the classifier, as a share of
      the schedule's rate (0.1: a tenth), in (0, 1].
    - `init_sha256`: the sha256 of the weights file. A run records the one it started
      from; a config that sets it refuses any other file.
    """

    init: str = ""
    init_sha256: str = ""
    normalization: str = "data"
    freeze: tuple[str, ...] = ()
    backbone_rate_scale: float = 1.0

    def __post_init__(self) -> None:
        require(
            self.normalization in ("data", "checkpoint"),
            f"fine_tune.normalization must be 'data' or 'checkpoint', got {self.normalization!r}",
        )
        for part in self.freeze:
            require(
                isinstance(part, str) and FREEZABLE.fullmatch(part) is not None,
                f"fine_tune.freeze entries are 'stem', 'stage1', 'stage2', ... or "
                f"'backbone', got {part!r}",
            )
        require(
            self.init_sha256 == "" or re.fullmatch(r"[0-9a-f]{64}", self.init_sha256),
            f"fine_tune.init_sha256 must be 64 lowercase hex digits, got {self.init_sha256!r}",
        )
        scale = self.backbone_rate_scale
        require(
            math.isfinite(scale) and 0 < scale <= 1,
            f"fine_tune.backbone_rate_scale must be in (0, 1], got {scale}",
        )
        require(
            not (self.freeze or scale != 1) or bool(self.init),
            "fine_tune.freeze and fine_tune.backbone_rate_scale need weights to start from: "
            "set fine_tune.init (train.py --init CHECKPOINT or keras:resnet50)",
        )

    @property
    def from_keras(self) -> bool:
        """Whether the weights are Keras' ImageNet weights (keras:NAME)."""
        return self.init.startswith(KERAS_PREFIX)
