"""Model builders: ResNet specs, presets by name, and the builder."""

from pipeline.nn.presets import PRESETS, build_preset, spec_of
from pipeline.nn.resnet import ResNetSpec, build_resnet

__all__ = ["PRESETS", "ResNetSpec", "build_preset", "build_resnet", "spec_of"]
