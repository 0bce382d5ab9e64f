"""Model builders: ResNet specs, presets by name, and the builder.

The specs and presets load no framework; `build_resnet` (and building a preset)
imports Keras when first used.
"""

from pipeline.nn.presets import PRESETS, build_preset, spec_of
from pipeline.nn.spec import ResNetSpec

__all__ = ["PRESETS", "ResNetSpec", "build_preset", "build_resnet", "spec_of"]


def __getattr__(name: str):
    # PEP 562: `from pipeline.nn import build_resnet` loads Keras only then.
    if name == "build_resnet":
        from pipeline.nn.resnet import build_resnet

        return build_resnet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
