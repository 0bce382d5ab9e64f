"""Which data set a config trains on, and whether a split holds it (no Keras).

A config states the kind of data set it trains on (data.dataset) and its class count
(data.num_classes); a split records its kind in its `source` attribute and its class
names. Digits built into a CIFAR preset's folder would otherwise train the 83-layer CIFAR
network on digits without a word.
"""

from pathlib import Path

from pipeline.datasets.hdf5_commit import finish_committed_build
from pipeline.datasets.hdf5_reader import missing_split_error
from pipeline.datasets.kinds import KINDS, build_advice, guess_kind, kind_of
from pipeline.errors import UserError


def build_advice_for(data) -> str:
    """How to build the config's data set (a DataConfig) into its dataset_dir."""
    if data.dataset:
        advice = build_advice(data.dataset, data.dataset_dir)
        return f"the config trains on {data.dataset} (data.dataset): {advice}"
    return build_advice(guess_kind(data.dataset_dir), data.dataset_dir)


def require_split(data, path: str | Path) -> Path:
    """`path`, a split file of the config's data set; a missing one is a UserError that
    names the builder of the config's kind, with its dataset_dir as --output."""
    path = Path(path)
    # A build stopped while moving into place is finished first, as open_split does.
    finish_committed_build(path.parent)
    if not path.is_file():
        raise missing_split_error(path, build_advice_for(data))
    return path


def stated_differences(dataset: str, num_classes: int, info) -> dict[str, tuple]:
    """{config key: (stated, held)} for each stated value (data.dataset, data.num_classes)
    that the split (a SplitInfo) contradicts. A kind unknown on either side is not
    compared: files of other tools, and the tests' own, name no kind."""
    differences = {}
    held = kind_of(info)
    if dataset and held and held != dataset:
        differences["data.dataset"] = (dataset, held)
    if num_classes and num_classes != info.num_classes:
        differences["data.num_classes"] = (num_classes, info.num_classes)
    return differences


def describe_contents(info) -> str:
    """What a split holds, in words: its kind (or its source) and its class count."""
    kind = kind_of(info)
    what = f"{kind} data" if kind else f"data of source {info.source!r}"
    return f"{what} with {info.num_classes} classes"


def check_split_matches(data, info) -> None:
    """Refuse a split whose kind or class count differs from what the config (a DataConfig)
    states, in one line: the file, what it holds, what the config says, and the fixes."""
    differences = stated_differences(data.dataset, data.num_classes, info)
    if not differences:
        return
    said = ", ".join(f"{key} = {stated!r}" for key, (stated, _held) in differences.items())
    settings = " ".join(f"--set {key}={held}" for key, (_stated, held) in differences.items())
    rebuild = ""
    if data.dataset:
        command = KINDS[data.dataset].build_command(data.dataset_dir, overwrite=True)
        rebuild = f"rebuild it with '{command}', or "
    raise UserError(
        f"{info.path} holds {describe_contents(info)}, but the config says {said}; "
        f"{rebuild}train on what it holds with {settings} (or another --config)"
    )
