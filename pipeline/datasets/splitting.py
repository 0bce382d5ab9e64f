"""Stratified carving of validation and test samples out of a labelled list, by seed."""

from collections.abc import Callable

import numpy as np

from pipeline.errors import UserError


def carve_per_class(
    labels, how_many: Callable[[int], int], rng: np.random.Generator, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (carved, rest), taking how_many(class size) of each class.

    Classes are visited in id order and sampled with `rng`, so the same seed
    gives the same split on every machine.
    """
    labels = np.asarray(labels)
    carved, rest = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = how_many(len(members))
        if not 0 <= count < len(members):
            raise UserError(
                f"cannot take {count} {what} images from class {label}, which has "
                f"{len(members)}; lower the {what} size"
            )
        shuffled = rng.permutation(members)
        carved.append(shuffled[:count])
        rest.append(shuffled[count:])
    return np.sort(np.concatenate(carved)), np.sort(np.concatenate(rest))


def fraction_of(fraction: float) -> Callable[[int], int]:
    """how_many for carve_per_class: a rounded fraction of each class."""
    if not 0 <= fraction < 1:
        raise UserError(f"split fractions must be in [0, 1), got {fraction}")
    return lambda class_size: round(class_size * fraction)


def carve_splits(records, val_fraction, test_fraction, seed) -> dict[str, list]:
    """Records (with a .label) into train/val/test: val and test are fractions of each class."""
    if val_fraction + test_fraction >= 1:
        raise UserError(
            f"val and test fractions must sum below 1, got {val_fraction + test_fraction}"
        )
    rng = np.random.default_rng(seed)
    splits = {}
    remaining = list(records)
    taken = 0.0
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        if fraction:
            labels = [record.label for record in remaining]
            # A fraction of the whole class, expressed on what earlier carve-outs left.
            share = fraction_of(fraction / (1.0 - taken))
            carved, rest = carve_per_class(labels, share, rng, split)
            splits[split] = [remaining[i] for i in carved]
            remaining = [remaining[i] for i in rest]
            taken += fraction
    return {"train": remaining, **splits}
