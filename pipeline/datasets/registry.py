"""The data sets build_dataset.py knows, by name."""

from pathlib import Path

from pipeline.datasets import digits
from pipeline.errors import UserError

BUILDERS = {"digits": digits.build}
DEFAULT_OUTPUT_ROOT = Path("output/datasets")


def build_dataset(name: str, *, output=None, source=None, seed: int = 0, overwrite=False) -> dict:
    """Build data set `name` into `output` (default output/datasets/<name>); return the summary."""
    if name not in BUILDERS:
        raise UserError(f"unknown data set {name!r}; choose one of {', '.join(BUILDERS)}")
    if name == "digits" and source is not None:
        raise UserError("the digits data set ships with scikit-learn; drop --source")
    output = Path(output) if output is not None else DEFAULT_OUTPUT_ROOT / name
    return BUILDERS[name](output, seed=seed, overwrite=overwrite)
