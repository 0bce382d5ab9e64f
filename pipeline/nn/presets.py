"""Named networks, as data: the papers' tables and the reference projects' networks.

Each preset states its source. Weight decay: the papers use SGD weight decay
1e-4, which is the Keras L2 coefficient 5e-5 (Keras adds l2 * sum(w^2) to the
loss, whose gradient is 2 * l2 * w). The reference Keras projects used
L2(5e-4) (weight decay 1e-3); their presets keep it.
"""

import dataclasses

from pipeline.errors import UserError
from pipeline.nn.spec import ResNetSpec

CIFAR_FILTERS = (16, 16, 32, 64)
PAPER_L2 = 5e-5  # weight decay 1e-4
REFERENCE_L2 = 5e-4


def _cifar_original(depth: int) -> ResNetSpec:
    blocks = (depth - 2) // 6
    return ResNetSpec(
        block="basic",
        stages=(blocks,) * 3,
        filters=CIFAR_FILTERS,
        stem="cifar",
        preactivation=False,
        shortcut="A",
        l2=PAPER_L2,
        source=f"He et al. 2015, Sec. 4.2, Table 6: ResNet-{depth} on CIFAR-10 (n={blocks})",
    )


def _cifar_preact(depth: int, block: str) -> ResNetSpec:
    per_block = 3 if block == "bottleneck" else 2
    blocks = (depth - 2) // (3 * per_block)
    filters = (16, 64, 128, 256) if block == "bottleneck" else CIFAR_FILTERS
    return ResNetSpec(
        block=block,
        stages=(blocks,) * 3,
        filters=filters,
        stem="cifar",
        preactivation=True,
        shortcut="B",
        l2=PAPER_L2,
        source=f"He et al. 2016, Table 2/3: pre-activation ResNet-{depth} on CIFAR ({block})",
    )


def _imagenet(stages, block, preactivation, name) -> ResNetSpec:
    filters = (64, 256, 512, 1024, 2048) if block == "bottleneck" else (64, 64, 128, 256, 512)
    return ResNetSpec(
        block=block,
        stages=stages,
        filters=filters,
        stem="imagenet",
        preactivation=preactivation,
        shortcut="B",
        l2=PAPER_L2,
        source=f"He et al. {'2016' if preactivation else '2015, Table 1'}: {name} on ImageNet",
    )


def _keras_applications(depth: int) -> ResNetSpec:
    stages = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    return dataclasses.replace(
        _imagenet(stages, "bottleneck", False, f"ResNet-{depth}"),
        stem_padding="symmetric",
        bn_epsilon=1.001e-5,
        source=f"keras.applications ResNet{depth} (He et al. 2015, Table 1; its ImageNet "
        f"weights: train.py --init keras:resnet{depth})",
    )


def _reference_keras(stages, filters, stem, what) -> ResNetSpec:
    """The reference Keras project's networks: pre-activation bottlenecks with a
    projection at every stage, its L2, epsilon and initializer."""
    return ResNetSpec(
        block="bottleneck",
        stages=stages,
        filters=filters,
        stem=stem,
        preactivation=True,
        project_every_stage=True,
        l2=REFERENCE_L2,
        bn_epsilon=2e-5,
        initializer="glorot_uniform",
        source=f"reference Keras project, {what}",
    )


def _reference_caltech(stages, what) -> ResNetSpec:
    """The reference PyTorch project's Caltech-256 networks."""
    return ResNetSpec(
        block="bottleneck",
        stages=stages,
        filters=(64, 128, 256, 512, 1024),
        stem="imagenet",
        preactivation=True,
        l2=PAPER_L2,
        initializer="glorot_normal",
        source=f"reference PyTorch project, Caltech-256 {what}",
    )


PRESETS: dict[str, ResNetSpec] = {
    **{f"resnet{depth}": _cifar_original(depth) for depth in (20, 32, 44, 56, 110, 1202)},
    "preact_resnet110": _cifar_preact(110, "basic"),
    "preact_resnet164": _cifar_preact(164, "bottleneck"),
    "preact_resnet1001": _cifar_preact(1001, "bottleneck"),
    "resnet18": _imagenet((2, 2, 2, 2), "basic", False, "ResNet-18"),
    "resnet34": _imagenet((3, 4, 6, 3), "basic", False, "ResNet-34"),
    "resnet50": _imagenet((3, 4, 6, 3), "bottleneck", False, "ResNet-50"),
    "resnet101": _imagenet((3, 4, 23, 3), "bottleneck", False, "ResNet-101"),
    "resnet152": _imagenet((3, 8, 36, 3), "bottleneck", False, "ResNet-152"),
    # keras.applications' ResNet50/101/152, whose ImageNet weights --init keras:NAME
    # loads (pipeline/nn/keras_weights.py): the paper's networks, padded symmetrically.
    **{f"keras_resnet{depth}": _keras_applications(depth) for depth in (50, 101, 152)},
    "preact_resnet50": _imagenet((3, 4, 6, 3), "bottleneck", True, "pre-activation ResNet-50"),
    # The reference Keras project's CIFAR-10 network, which it called "ResNet56":
    # bottleneck stages of 9 blocks are 83 weighted layers.
    "reference_cifar_preact_resnet83": _reference_keras(
        (9, 9, 9),
        (64, 64, 128, 256),
        "cifar",
        "CIFAR-10 'ResNet56' (its Table 1, experiments 2-4)",
    ),
    "reference_tiny_imagenet_preact_resnet41": _reference_keras(
        (3, 4, 6),
        (64, 128, 256, 512),
        "tiny_imagenet",
        "Tiny ImageNet network (its Table 2, 41 layers)",
    ),
    "caltech_preact_resnet20": _reference_caltech((1, 2, 2, 1), "ResNet-20 (experiment 2)"),
    "caltech_preact_resnet26": _reference_caltech((2, 2, 2, 2), "ResNet-26 (experiment 1)"),
}

# The input each preset was designed for.
DEFAULT_INPUT_SHAPES = {
    "cifar": (32, 32, 3),
    "tiny_imagenet": (64, 64, 3),
    "imagenet": (224, 224, 3),
}


def spec_of(name: str, **overrides) -> ResNetSpec:
    """The spec of preset `name`, with fields replaced by `overrides`."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    fields = {field.name for field in dataclasses.fields(ResNetSpec)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UserError(f"preset option(s) {', '.join(unknown)} unknown; known: {sorted(fields)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def spec_for(preset: str, fields: dict) -> ResNetSpec:
    """The spec a model config describes: preset `preset` with `fields` replacing some of
    its fields, or without a preset the whole network from `fields` (block, stages,
    filters, ...). Lists (as TOML gives them) become tuples."""
    fields = {
        key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()
    }
    if preset and preset not in PRESETS:
        raise UserError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not preset and not fields:
        raise UserError(
            "the model needs model.preset (a name from pipeline.nn.PRESETS) or model.spec"
        )
    known = {field.name for field in dataclasses.fields(ResNetSpec)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UserError(f"model.spec keys {', '.join(unknown)} unknown; known: {sorted(known)}")
    missing = [name for name in ("block", "stages", "filters") if name not in fields]
    if not preset and missing:
        raise UserError(f"model.spec without model.preset needs {', '.join(missing)} too")
    try:
        return dataclasses.replace(PRESETS[preset], **fields) if preset else ResNetSpec(**fields)
    except TypeError as error:  # e.g. a string where counts belong
        raise UserError(f"model.spec has a value of the wrong type ({error})") from None
    except UserError as error:
        raise UserError(f"model.spec: {error}") from None


def build_preset(
    name: str,
    num_classes: int,
    input_shape=None,
    *,
    mean=None,
    std=None,
    mean_image=None,
    **overrides,
) -> "keras.Model":  # noqa: F821 (Keras is imported only when a model is built)
    """The `keras.Model` of preset `name`; `overrides` replace fields of its spec.

    `input_shape` defaults to the size the preset was designed for; pass
    (None, None, 3) for fully-convolutional evaluation at several scales.
    """
    from pipeline.nn.resnet import build_resnet

    spec = spec_of(name, **overrides)
    shape = input_shape or DEFAULT_INPUT_SHAPES[spec.stem]
    return build_resnet(
        spec,
        num_classes=num_classes,
        input_shape=shape,
        mean=mean,
        std=std,
        mean_image=mean_image,
        name=name,
    )
