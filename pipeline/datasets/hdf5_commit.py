"""Committing a build: every split of a data set is replaced at once, or none is.

A build writes its split files into a hidden staging folder of the dataset
directory, gives them one `build_id`, then writes the COMMITTED mark (the list of
its files) and moves them into place. A kill before the mark leaves the old data
set; a kill after it is finished by the next reader or build, so that a reader
never sees half the old data set and half the new one. The fsync helpers make
each step survive a power cut.
"""

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from pipeline.datasets.hdf5_format import PARTIAL_SUFFIX
from pipeline.errors import UserError

# A build is staged in this hidden folder of the dataset directory; COMMITTED in it
# (the list of its files) says that the staged build is whole and replaces the old one.
STAGING_DIR = ".building"
COMMITTED = "COMMITTED"


def fsync_file(path) -> None:
    """Flush a written file's contents to disk (before it is renamed into place)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(directory) -> None:
    """Flush a folder's entries to disk, so that a rename in it survives a power cut."""
    # Some file systems cannot sync a folder; the rename itself is still atomic.
    with contextlib.suppress(OSError):
        fsync_file(directory)


def stamp_build_id(split_files) -> str:
    """Give every split of one build the same `build_id`: a digest of their labels, shapes,
    statistics and first and last image chunks. It is a function of the content, so that
    rebuilding with the same inputs gives the same bytes, and builds that differ differ."""
    digest = hashlib.sha256()
    for path in split_files:
        with h5py.File(path, "r") as handle:
            images, labels = handle["images"], handle["labels"]
            digest.update(f"{Path(path).name} {images.shape} {images.dtype}".encode())
            digest.update(labels[()].tobytes())
            for name in ("mean", "std"):
                digest.update(np.asarray(handle.attrs[name], np.float64).tobytes())
            rows = images.chunks[0] if images.chunks else 1
            for part in (images[:rows], images[-rows:]):
                for item in part if images.dtype == object else [part]:
                    digest.update(np.ascontiguousarray(item).tobytes())
    build_id = digest.hexdigest()[:32]
    for path in split_files:
        with h5py.File(path, "a") as handle:
            handle.attrs["build_id"] = build_id
    return build_id


def commit_staged_build(dataset_dir: str | Path, files, stale) -> None:
    """Mark the staged build whole (COMMITTED lists its files and the old splits it drops),
    then move it into place. From the mark on, the new build is the data set: a kill
    during the moves is finished by the next reader or build (finish_committed_build)."""
    staging = Path(dataset_dir) / STAGING_DIR
    for name in files:
        fsync_file(staging / name)
    marker = staging / COMMITTED
    partial = marker.with_name(COMMITTED + PARTIAL_SUFFIX)
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump({"files": list(files), "stale": list(stale)}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, marker)
    fsync_directory(staging)
    finish_committed_build(dataset_dir)


def finish_committed_build(dataset_dir: str | Path) -> bool:
    """Finish moving a committed build into place, if one is staged (each step may have
    been done already: a kill can stop it anywhere). True when there was one."""
    dataset_dir = Path(dataset_dir)
    staging = dataset_dir / STAGING_DIR
    marker = staging / COMMITTED
    if not marker.is_file():
        return False
    try:
        plan = json.loads(marker.read_text(encoding="utf-8"))
        files, stale = list(plan["files"]), list(plan["stale"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{marker} is damaged; rebuild the data set with --overwrite") from None
    try:
        for name in stale:
            (dataset_dir / Path(name).name).unlink(missing_ok=True)
        for name in files:
            staged = staging / Path(name).name
            # Another reader finishing the same build may have moved it already.
            with contextlib.suppress(FileNotFoundError):
                os.replace(staged, dataset_dir / staged.name)
        fsync_directory(dataset_dir)
        marker.unlink(missing_ok=True)
    except OSError as error:
        raise UserError(
            f"{dataset_dir} holds a build stopped while it moved into place, which cannot be "
            f"finished here ({error.strerror}); open it once with write access, or rebuild it"
        ) from None
    shutil.rmtree(staging, ignore_errors=True)
    return True
