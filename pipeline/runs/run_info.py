"""What a run records about where it ran: config.json, and run_info.json with the
package versions, the git commit and the data files' fingerprints (no Keras here)."""

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from pipeline.datasets.hdf5_reader import open_split
from pipeline.runs.json_files import write_json_atomically
from pipeline.runs.run_dir import CONFIG_FILE, RUN_INFO_FILE

PACKAGES = ("keras", "tensorflow", "jax", "numpy", "h5py", "opencv-python-headless")


def write_run_info(run_dir, config_dict: dict, data_files, precision_why: str = "") -> Path:
    """config.json, and run_info.json: package versions, git commit, data fingerprints,
    why the run trains in its precision (`precision_why`) and, for a fine-tuned run,
    the weights it started from."""
    run_dir = Path(run_dir)
    write_json_atomically(run_dir / CONFIG_FILE, config_dict)
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "git_commit": _git_commit(),
        "data": {str(path): fingerprint(path) for path in data_files},
        "precision": {"chosen": config_dict["training"]["precision"], "why": precision_why},
    }
    fine_tune = config_dict.get("fine_tune") or {}
    if fine_tune.get("init"):
        # Where the weights came from (config.json holds the same, with the settings).
        info["init"] = {"weights": fine_tune["init"], "sha256": fine_tune.get("init_sha256")}
    write_json_atomically(run_dir / RUN_INFO_FILE, info)
    return run_dir / RUN_INFO_FILE


def fingerprint(path) -> dict:
    """A quick identity of a split file: its metadata and a hash of its labels and first
    and last image chunks (hashing a 100 GB file would take longer than it is worth)."""
    with open_split(path) as handle:
        images, labels = handle["images"], handle["labels"]
        digest = hashlib.sha256(labels[()].tobytes())
        rows = images.chunks[0] if images.chunks else 1
        for part in (images[:rows], images[-rows:]):
            for item in part if images.dtype == object else [part]:
                digest.update(item.tobytes())
        return {
            "bytes": Path(path).stat().st_size,
            "num_samples": int(labels.shape[0]),
            "source": str(handle.attrs["source"]),
            "format_version": int(handle.attrs["format_version"]),
            "sha256_labels_and_edges": digest.hexdigest(),
        }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the pipeline's own checkout, with '+dirty' for local changes."""
    repository = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repository), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(repository), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")
