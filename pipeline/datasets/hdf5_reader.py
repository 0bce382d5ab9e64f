"""Reading the HDF5 split file (the format of hdf5_format) without trusting it.

`open_split` finishes a committed build first, then refuses a file that is
missing, unreadable, never completed, of an unknown `format_version` or that
breaks the contract, each with a message that says what to do. SplitInfo is
what a reader needs to know about a split without loading its images.
"""

import dataclasses
from pathlib import Path

import h5py
import numpy as np

from pipeline.datasets.hdf5_commit import finish_committed_build
from pipeline.datasets.hdf5_format import (
    PARTIAL_SUFFIX,
    SUPPORTED_FORMAT_VERSIONS,
    ContractError,
    check_contract,
)
from pipeline.datasets.kinds import build_advice, guess_kind
from pipeline.errors import UserError


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """What a reader needs to know about a split without loading its images."""

    path: Path
    split: str
    num_samples: int
    # None for JPEG-encoded splits, whose images vary in size.
    image_shape: tuple[int, int, int] | None
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    encoding: str = "raw"
    # 3x3 RGB covariance of the train split, when the builder stored it.
    covariance: tuple[tuple[float, ...], ...] | None = None
    # The same in every split of one build (None: built before build ids existed).
    build_id: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def open_split(path: str | Path) -> h5py.File:
    """Open a split for reading after checking that it is whole and of a known version."""
    path = Path(path)
    # A build killed while moving its files into place is finished first: the reader
    # sees the new data set whole, never half old and half new.
    finish_committed_build(path.parent)
    if not path.is_file():
        # No config says which data set belongs here: the folder's name may.
        raise missing_split_error(path, build_advice(guess_kind(path.parent), path.parent))
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise UserError(f"{path} is not a readable HDF5 file ({error}); rebuild it") from None
    if not _is_complete(handle.attrs.get("complete", False)):
        handle.close()
        raise UserError(f"{path} was never completed (no 'complete' mark); rebuild it")
    version = handle.attrs.get("format_version", -1)
    if not isinstance(version, int | np.integer) or int(version) not in SUPPORTED_FORMAT_VERSIONS:
        handle.close()
        raise UserError(
            f"{path} has format_version {version}, this version reads "
            f"{SUPPORTED_FORMAT_VERSIONS}; rebuild it or update the pipeline"
        )
    try:
        check_contract(handle)
    except ContractError as error:
        handle.close()
        raise UserError(f"{path} breaks the split format: {error}; rebuild it") from None
    return handle


def missing_split_error(path: Path, advice: str) -> UserError:
    """The error for a split file that is not there, with `advice` on building it."""
    hint = ""
    if path.with_name(path.name + PARTIAL_SUFFIX).exists():
        hint = " (only an unfinished .partial build is there)"
    return UserError(f"dataset file {path} does not exist{hint}; {advice}")


def _is_complete(mark) -> bool:
    """The `complete` mark: one true value (a forged [1, 1] is no mark)."""
    value = np.asarray(mark)
    return value.shape == () and value.dtype.kind in "biu" and bool(value)


def read_split_info(path: str | Path) -> SplitInfo:
    """Read a split's metadata (shapes, class names, statistics) without its images."""
    with open_split(path) as handle:
        class_names = tuple(name.decode("utf-8") for name in handle["class_names"][()])
        encoding = str(handle.attrs.get("encoding", "raw"))
        image_shape = None
        if encoding == "raw":
            image_shape = tuple(int(size) for size in handle["images"].shape[1:])
        return SplitInfo(
            path=Path(path),
            split=str(handle.attrs["split"]),
            num_samples=int(handle["labels"].shape[0]),
            image_shape=image_shape,
            class_names=class_names,
            mean=tuple(float(value) for value in handle.attrs["mean"]),
            std=tuple(float(value) for value in handle.attrs["std"]),
            source=str(handle.attrs["source"]),
            encoding=encoding,
            covariance=_as_nested_tuple(handle.attrs.get("covariance")),
            build_id=str(handle.attrs["build_id"]) if "build_id" in handle.attrs else None,
        )


def _as_nested_tuple(matrix):
    return None if matrix is None else tuple(tuple(float(v) for v in row) for row in matrix)


def read_mean_image(path: str | Path) -> np.ndarray:
    """The split's per-pixel mean image (H, W, 3, float32); a UserError when it has none."""
    with open_split(path) as handle:
        if "mean_image" not in handle:
            raise UserError(
                f"{path} has no mean_image (JPEG-encoded or built before it existed); "
                f"rebuild it or use model.normalization = 'channel'"
            )
        return handle["mean_image"][()]


def check_same_build(*infos: "SplitInfo") -> None:
    """Refuse splits of different builds side by side (train from one, val from another)."""
    known = [info for info in infos if info is not None and info.build_id]
    if len({info.build_id for info in known}) > 1:
        described = ", ".join(f"{info.path.name} {info.build_id[:8]}" for info in known)
        raise UserError(
            f"the splits of {known[0].path.parent} come from different builds ({described}); "
            f"rebuild the data set with --overwrite"
        )
