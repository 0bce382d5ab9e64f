"""Batched augmentations named in the config: an Augmenter built from config entries.

Each entry names one augmentation (augment_operations holds the NumPy and
OpenCV ones; Keras' RandAugment layer is here) and its options; build_augmenter
refuses an unknown name or option with a message that lists what exists.

In a config: `augment = [{name = "pad_crop", pad = 4}, {name = "flip"}]`.
"""

import inspect
import threading

import numpy as np

from pipeline.errors import UserError
from pipeline.io.augment_operations import (
    BrightnessContrast,
    CenterCrop,
    Equalize,
    HorizontalFlip,
    PadCrop,
    PCALighting,
    RandomAffine,
    RandomCrop,
    ScaleCrop,
)


class KerasRandAugment:
    """keras.layers.RandAugment on the batch (value range 0-255).

    The layer draws from its own seed generator; its state is set from the
    batch's rng (and `seed`) before each batch, so that, like the other steps,
    its draws depend only on (seed, epoch, batch) and repeat exactly after a
    resume. The lock keeps loader threads from interleaving state and draws.
    """

    def __init__(self, num_ops: int = 2, factor: float = 0.5, seed: int = 0) -> None:
        import keras

        self.seed = seed
        # Built outside any distribution: under a multi-worker DataParallel its seed
        # state would be a variable spread over every process, and setting it from
        # one worker's batch stream a cross-process collective (which fails, the
        # values differing between workers). The layer runs on host batches anyway.
        distribution = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            self.layer = keras.layers.RandAugment(
                value_range=(0, 255), num_ops=num_ops, factor=factor, seed=seed
            )
        finally:
            keras.distribution.set_distribution(distribution)
        self._lock = threading.Lock()

    def __call__(self, images, rng):
        import keras

        state = self.layer.generator.state
        start = np.array([rng.integers(2**31), self.seed], dtype=np.int64)
        with self._lock:
            state.assign(keras.ops.convert_to_tensor(start, dtype=state.dtype))
            augmented = self.layer(images.astype("float32"), training=True)
        return np.clip(keras.ops.convert_to_numpy(augmented), 0, 255).astype(np.uint8)


def reference_set(fill: str = "nearest"):
    """The reference Keras project's augmentation: ImageDataGenerator(rotation_range=18,
    zoom_range=0.15, width/height_shift_range=0.2, shear_range=0.15, horizontal_flip)."""
    return [
        RandomAffine(rotation=18, zoom=0.15, shift=0.2, shear=0.15, fill=fill),
        HorizontalFlip(),
    ]


AUGMENTATIONS = {
    "pad_crop": PadCrop,
    "random_crop": RandomCrop,
    "center_crop": CenterCrop,
    "flip": HorizontalFlip,
    "affine": RandomAffine,
    "brightness_contrast": BrightnessContrast,
    "equalize": Equalize,
    "pca_lighting": PCALighting,
    "scale": ScaleCrop,
    "randaugment": KerasRandAugment,
    "reference": reference_set,
}
# Arguments filled in from the data set rather than the config.
FROM_DATA = {"covariance"}


class Augmenter:
    """A sequence of augmentations applied in order."""

    def __init__(self, steps) -> None:
        self.steps = list(steps)

    @property
    def crop_side(self) -> int | None:
        """The side of the square images the last cropping step gives (None: no crop)."""
        sides = [step.size for step in self.steps if isinstance(step, RandomCrop | CenterCrop)]
        return sides[-1] if sides else None

    @property
    def sizes_images(self) -> bool:
        """Whether the first step turns images of any size into one size (ScaleCrop)."""
        return bool(self.steps) and isinstance(self.steps[0], ScaleCrop)

    def __call__(self, images, rng):
        for step in self.steps:
            images = step(images, rng)
        return np.ascontiguousarray(images)


def build_augmenter(specs, *, covariance=None) -> Augmenter:
    """An Augmenter from config entries like {"name": "pad_crop", "pad": 4}."""
    steps = []
    for spec in specs:
        spec = dict(spec)
        name = spec.pop("name", None)
        if name not in AUGMENTATIONS:
            raise UserError(
                f"unknown augmentation {name!r}; choose from {', '.join(sorted(AUGMENTATIONS))}"
            )
        factory = AUGMENTATIONS[name]
        accepted = set(inspect.signature(factory).parameters) - FROM_DATA
        unknown = sorted(set(spec) - accepted)
        if unknown:
            raise UserError(
                f"augmentation {name!r} takes {sorted(accepted) or 'no options'}, "
                f"not {', '.join(unknown)}"
            )
        if "covariance" in inspect.signature(factory).parameters:
            spec["covariance"] = covariance
        made = factory(**spec)
        steps.extend(made if isinstance(made, list) else [made])
    return Augmenter(steps)
