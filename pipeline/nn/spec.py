"""ResNetSpec: what makes one ResNet differ from another, as data (no Keras here, so
that configs, presets and `python -m pipeline.nn list` are checked and answer without
loading a framework)."""

import dataclasses

from pipeline.errors import UserError

BLOCKS = ("basic", "bottleneck")
STEMS = ("cifar", "tiny_imagenet", "imagenet")
SHORTCUTS = ("A", "B")
# How the ImageNet stem pads its strided 7x7 convolution and max pool: "same" (TF's,
# one pixel more after than before) or "symmetric" (3 and 1 pixels on every side, as
# keras.applications and torchvision do: their weights need it).
STEM_PADDINGS = ("same", "symmetric")
# A bottleneck block's inner width is its output channels / BOTTLENECK_EXPANSION.
BOTTLENECK_EXPANSION = 4


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """Everything that makes one ResNet differ from another."""

    block: str
    # Residual blocks per stage.
    stages: tuple[int, ...]
    # The stem's output channels, then each stage's output channels.
    filters: tuple[int, ...]
    stem: str = "cifar"
    # True: BN-ReLU before each convolution (He 2016); False: after it (He 2015).
    preactivation: bool = True
    # "A": parameter-free shortcut (subsample, zero-pad channels) where the shape
    # changes (He 2015, CIFAR); "B": 1x1 projection where the shape changes.
    shortcut: str = "B"
    # The reference projects project the first block of every stage, even when
    # its shape does not change.
    project_every_stage: bool = False
    # Keras L2 coefficient on every convolution and dense kernel. Keras adds
    # l2 * sum(w^2) to the loss, so SGD weight decay wd corresponds to l2 = wd / 2.
    l2: float = 5e-5
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.9
    # "he_normal" (the papers) or "glorot_normal" / "glorot_uniform" (Xavier).
    initializer: str = "he_normal"
    stem_padding: str = "same"
    source: str = ""

    def __post_init__(self) -> None:
        _require(self.block in BLOCKS, f"block must be one of {BLOCKS}, got {self.block!r}")
        _require(self.stem in STEMS, f"stem must be one of {STEMS}, got {self.stem!r}")
        _require(self.shortcut in SHORTCUTS, f"shortcut must be A or B, got {self.shortcut!r}")
        _require(
            self.stem_padding in STEM_PADDINGS,
            f"stem_padding must be one of {STEM_PADDINGS}, got {self.stem_padding!r}",
        )
        _require(
            len(self.stages) >= 1 and all(count >= 1 for count in self.stages),
            f"stages must be a non-empty list of positive counts, got {list(self.stages)}",
        )
        _require(
            len(self.filters) == len(self.stages) + 1,
            f"filters needs {len(self.stages) + 1} values (stem, then one per stage), "
            f"got {list(self.filters)}",
        )
        if self.block == "bottleneck":
            _require(
                all(count % BOTTLENECK_EXPANSION == 0 for count in self.filters[1:]),
                f"bottleneck stages need channels divisible by 4, got {list(self.filters)}",
            )
        _require(self.l2 >= 0, f"l2 must be >= 0, got {self.l2}")

    @property
    def depth(self) -> int:
        """Weighted layers on the main path: stem conv, block convs, the dense layer."""
        per_block = 3 if self.block == "bottleneck" else 2
        return 1 + per_block * sum(self.stages) + 1


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
