"""The data sets build_dataset.py knows, by name, and the options each one takes."""

import contextlib
import functools
import inspect
from pathlib import Path

from pipeline.datasets import caltech256, cifar_builder, digits, folder, tiny_imagenet
from pipeline.datasets.builder import prepare_output_dir
from pipeline.errors import UserError

BUILDERS = {
    "digits": digits.build,
    "cifar10": functools.partial(cifar_builder.build, dataset="cifar10"),
    "cifar100": functools.partial(cifar_builder.build, dataset="cifar100"),
    "tiny-imagenet": tiny_imagenet.build,
    "caltech256": caltech256.build,
    "folder": folder.build,
}
DEFAULT_OUTPUT_ROOT = Path("output/datasets")
# Keyword arguments every builder takes, which are not per-data-set options.
COMMON = {"seed", "overwrite"}


def options_of(name: str) -> set[str]:
    """The keyword options builder `name` accepts, beyond seed and overwrite."""
    parameters = inspect.signature(BUILDERS[name]).parameters
    return {
        key
        for key, parameter in parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and key not in COMMON | {"dataset"}
    }


def build_dataset(name: str, *, output=None, seed: int = 0, overwrite=False, **options) -> dict:
    """Build data set `name` into `output` (default output/datasets/<name>); return the summary.

    `options` that are None are left at the builder's defaults; an option the
    data set does not take is a UserError.
    """
    if name not in BUILDERS:
        raise UserError(f"unknown data set {name!r}; choose one of {', '.join(BUILDERS)}")
    given = {key: value for key, value in options.items() if value is not None}
    accepted = options_of(name)
    unexpected = sorted(set(given) - accepted)
    if unexpected:
        flags = ", ".join("--" + key.replace("_", "-") for key in unexpected)
        hint = ", ".join(sorted("--" + key.replace("_", "-") for key in accepted)) or "none"
        raise UserError(f"{flags} does not apply to {name} (its options: {hint})")
    if "source" in accepted:
        # Passed even when missing, so that the builder says what to download.
        given.setdefault("source", None)
    output = Path(output) if output is not None else DEFAULT_OUTPUT_ROOT / name
    created = not output.exists()
    # Refuse an existing output before reading gigabytes of source data.
    prepare_output_dir(output, overwrite)
    try:
        return BUILDERS[name](output, seed=seed, overwrite=overwrite, **given)
    except BaseException:
        # A refused build (a bad source) leaves no new empty folder behind.
        if created:
            with contextlib.suppress(OSError):
                output.rmdir()
        raise
