"""The cluster of a multi-worker run, as the environment describes it.

TensorFlow's TF_CONFIG or Keras' KERAS_DISTRIBUTION_* variables; read without
loading Keras, so that the command line can find a worker's own run directory.
"""

import dataclasses
import json
import os
from pathlib import Path

from pipeline.errors import UserError
from pipeline.runs.run_dir import WORKER_DIR_PREFIX

CLUSTER_VARIABLES = (
    "TF_CONFIG, or KERAS_DISTRIBUTION_JOB_ADDRESSES with KERAS_DISTRIBUTION_NUM_PROCESSES "
    "and KERAS_DISTRIBUTION_PROCESS_ID"
)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The workers of a multi-worker run: process 0 is the coordinator (the chief)."""

    addresses: tuple[str, ...]
    process_id: int

    @property
    def coordinator(self) -> str:
        return self.addresses[0]

    @property
    def num_processes(self) -> int:
        return len(self.addresses)


def cluster_from_environment(environ=None) -> Cluster:
    """The cluster from TF_CONFIG (TensorFlow's convention, a chief first if it names
    one) or from Keras' KERAS_DISTRIBUTION_* variables."""
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG"):
        return _cluster_from_tf_config(environ["TF_CONFIG"])
    if environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        addresses = tuple(environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(","))
        try:
            count = int(environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", len(addresses)))
            process_id = int(environ["KERAS_DISTRIBUTION_PROCESS_ID"])
        except (KeyError, ValueError) as error:
            raise UserError(f"multi-worker training needs {CLUSTER_VARIABLES}: {error}") from None
        if len(addresses) == 1 and count > 1:  # only the coordinator given
            addresses = addresses * count
        if count != len(addresses):
            raise UserError(
                f"KERAS_DISTRIBUTION_NUM_PROCESSES is {count} but "
                f"KERAS_DISTRIBUTION_JOB_ADDRESSES lists {len(addresses)} workers"
            )
        return _checked_cluster(addresses, process_id, "KERAS_DISTRIBUTION_JOB_ADDRESSES")
    raise UserError(f"training.distribute = 'multiworker' needs {CLUSTER_VARIABLES} set")


def _cluster_from_tf_config(text: str) -> Cluster:
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(
            'TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}}: {error!r}'
        ) from None
    if kind not in ("chief", "worker"):
        raise UserError(f"TF_CONFIG task type must be 'chief' or 'worker', got {kind!r}")
    listed = chiefs if kind == "chief" else workers
    if not 0 <= index < len(listed):
        raise UserError(
            f"TF_CONFIG: this {kind}'s index {index} is not among the {len(listed)} {kind}s listed"
        )
    process_id = index if kind == "chief" else len(chiefs) + index
    return _checked_cluster(tuple(chiefs + workers), process_id, "TF_CONFIG")


def _checked_cluster(addresses: tuple[str, ...], process_id: int, source: str) -> Cluster:
    if not 0 <= process_id < len(addresses):
        raise UserError(
            f"{source}: this worker's index {process_id} is not among the "
            f"{len(addresses)} workers listed"
        )
    return Cluster(addresses, process_id)


def cluster_in_environment(environ=None) -> bool:
    """Whether the environment describes a cluster at all."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("TF_CONFIG") or environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"))


def own_run_dir(run_dir: Path) -> Path:
    """This worker's run directory: run_dir for the chief (process 0), run_dir/worker_K
    for the others, which keep their own copy of every checkpoint and record, so that
    each can resume on its own machine."""
    process_id = cluster_from_environment().process_id
    return run_dir if process_id == 0 else run_dir / f"{WORKER_DIR_PREFIX}{process_id}"
