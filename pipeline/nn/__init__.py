"""Model builders."""

from pipeline.nn.resnet import build_resnet

__all__ = ["build_resnet"]
