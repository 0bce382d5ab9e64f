"""The kinds of data set build_dataset.py makes: what each is built from and the command
that builds it, and the kind a built split holds. No builder, no Keras: the config and
the split reader ask this module, and loading it costs nothing.

A split records its kind in its `source` attribute: "KIND:PATH" (cifar10, cifar100,
tiny-imagenet, caltech256, folder) or DIGITS_SOURCE for the digits.
"""

import dataclasses
from pathlib import Path

# The `source` attribute of the digits splits (pipeline.datasets.digits.SOURCE, which
# loads scikit-learn and OpenCV: repeated here, and a test keeps the two equal).
DIGITS_SOURCE = "sklearn.datasets.load_digits"
CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclasses.dataclass(frozen=True)
class DatasetKind:
    """One kind of data set: its build_dataset.py name and what --source takes."""

    name: str
    # The --source argument shown in the build command ("": the kind takes none).
    source: str
    # What that source is and where it comes from, in words.
    source_description: str

    def build_command(self, output: str | Path, overwrite: bool = False) -> str:
        """The build_dataset.py command that builds this kind into `output` (with
        `overwrite`, in place of the data set there)."""
        source = f" --source {self.source}" if self.source else ""
        replace = " --overwrite" if overwrite else ""
        return f"python build_dataset.py --dataset {self.name}{source} --output {output}{replace}"

    def build_advice(self, output: str | Path) -> str:
        """'build it with ...': the command and what its source is."""
        what = f"{self.source}: " if self.source else ""
        return f"build it with '{self.build_command(output)}' ({what}{self.source_description})"


KINDS = {
    kind.name: kind
    for kind in (
        DatasetKind("digits", "", "scikit-learn's handwritten digits, no download needed"),
        DatasetKind(
            "cifar10",
            "cifar-10-python.tar.gz",
            f"the official CIFAR-10 python version, from {CIFAR_PAGE}",
        ),
        DatasetKind(
            "cifar100",
            "cifar-100-python.tar.gz",
            f"the official CIFAR-100 python version, from {CIFAR_PAGE}",
        ),
        DatasetKind(
            "tiny-imagenet",
            "tiny-imagenet-200",
            "the folder extracted from tiny-imagenet-200.zip, from the CS231n site: "
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        ),
        DatasetKind(
            "caltech256",
            "256_ObjectCategories",
            "the folder extracted from Caltech-256's 256_ObjectCategories.tar, from "
            "https://data.caltech.edu/records/nyvsw-6gq82",
        ),
        DatasetKind("folder", "ROOT", "any tree of images, one folder per class: ROOT/<class>/*"),
    )
}


def kind_of(info) -> str | None:
    """The kind of data a split holds (a SplitInfo, read from its `source` attribute);
    None when its source names no kind (a file written by another tool, a test's)."""
    if info.source == DIGITS_SOURCE:
        return "digits"
    prefix, separator, _path = info.source.partition(":")
    return prefix if separator and prefix in KINDS and prefix != "digits" else None


def guess_kind(dataset_dir: str | Path) -> str | None:
    """The kind a data set folder is named after (output/datasets/cifar10), else None."""
    name = Path(dataset_dir).name
    return name if name in KINDS else None


def build_advice(kind: str | None, output: str | Path) -> str:
    """How to build data set `kind` into `output`; without a kind, the command with a
    placeholder and the kinds to choose from (never one guessed: digits built into a
    CIFAR folder would train the CIFAR preset on digits)."""
    if kind in KINDS:
        return KINDS[kind].build_advice(output)
    return (
        f"build it with 'python build_dataset.py --dataset NAME --source DOWNLOAD --output "
        f"{output}', NAME one of {', '.join(KINDS)} (digits takes no --source)"
    )
