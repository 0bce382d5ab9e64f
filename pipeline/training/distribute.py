"""Distribution, precision and determinism: the backend-specific corner of the pipeline.

TensorFlow-only code (tf.distribute strategies, op determinism) lives here
and nowhere else; on JAX, several devices train through Keras' DataParallel,
and several processes (machines) through the same DataParallel over JAX's
global device list.
"""

import contextlib
import dataclasses
from pathlib import Path

import keras
import numpy as np

from pipeline.errors import UserError
from pipeline.training.cluster import cluster_from_environment, own_run_dir


@dataclasses.dataclass
class Distribution:
    """How training is spread: a scope to build the model in, the number of replicas and,
    for multi-worker training, this process's place among the workers."""

    scope: contextlib.AbstractContextManager
    num_replicas: int = 1
    name: str = "none"
    process_index: int = 0
    process_count: int = 1
    # Devices of this process: its part of each global batch is split between them.
    local_replicas: int = 1
    # What this process's part of every batch must be a multiple of: JAX's DataParallel
    # splits it evenly between the local devices; TensorFlow's strategies take any size.
    batch_multiple: int = 1

    def any_process(self, flag: bool) -> bool:
        """True on every worker when `flag` is True on any of them (a collective call:
        every worker must make it at the same point, e.g. after the same batch)."""
        if self.process_count == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.array(flag))))

    def same_on_every_process(self, values: tuple[int, ...]) -> bool:
        """Whether every worker holds these same integers (a collective call)."""
        if self.process_count == 1:
            return True
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(np.asarray(values, dtype=np.int32))
        return bool(np.all(gathered == gathered[0]))


def worker_run_dir(run_dir: Path, kind: str) -> Path:
    """Where this process writes: the run directory, or in a multi-worker run this
    worker's own (see pipeline.training.cluster.own_run_dir)."""
    if kind != "multiworker":
        return run_dir
    _refuse_multiworker_on_tensorflow()  # before anything is created in run_dir
    return own_run_dir(run_dir)


def setup_distribution(kind: str) -> Distribution:
    """`none`, `auto` (mirrored when there are several accelerators), `mirrored`, `multiworker`."""
    backend = keras.backend.backend()
    if kind == "none":
        return Distribution(contextlib.nullcontext())
    if backend == "tensorflow":
        return _tensorflow_distribution(kind)
    if backend == "jax":
        return _jax_distribution(kind)
    raise UserError(f"training.distribute = {kind!r} is not supported on the {backend} backend")


def _tensorflow_distribution(kind: str) -> Distribution:
    import tensorflow as tf

    if kind == "multiworker":
        _refuse_multiworker_on_tensorflow()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if kind == "auto" and len(tf.config.list_logical_devices("GPU")) < 2:
        return Distribution(contextlib.nullcontext())
    strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    return Distribution(
        strategy.scope(),
        num_replicas=strategy.num_replicas_in_sync,
        name="mirrored",
        local_replicas=strategy.num_replicas_in_sync,
    )


def _refuse_multiworker_on_tensorflow() -> None:
    # Measured here with TensorFlow 2.21 and Keras 3.15: two workers on loopback fail
    # in the first train step ("Attempt to convert a value (PerReplica ...) to a
    # Tensor"), the open Keras issue keras-team/keras#20585. Refused clearly rather
    # than started and crashed; the JAX backend runs the same cluster.
    if keras.backend.backend() == "tensorflow":
        raise UserError(
            "training.distribute = 'multiworker' does not work with Keras 3's fit on "
            "TensorFlow (keras-team/keras#20585): run the same command with "
            "KERAS_BACKEND=jax, or 'mirrored' on one machine"
        )


def _jax_distribution(kind: str) -> Distribution:
    import jax

    if kind == "multiworker":
        return _jax_multiworker(jax)
    devices = jax.devices()
    if len(devices) < 2:
        return Distribution(contextlib.nullcontext())
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return Distribution(
        contextlib.nullcontext(),
        num_replicas=len(devices),
        name="data_parallel",
        local_replicas=len(devices),
        batch_multiple=len(devices),
    )


def _jax_multiworker(jax) -> Distribution:
    """One process per machine: JAX joins them (gloo collectives on CPUs), Keras'
    DataParallel spans every device of every process, and each process feeds its own
    shard of the data: its part of each global batch."""
    cluster = cluster_from_environment()
    if not jax.distributed.is_initialized():  # a second train() in the same process
        keras.distribution.initialize(
            cluster.coordinator, cluster.num_processes, cluster.process_id
        )
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    # The loader shards by worker itself; Keras would otherwise insist on a tf.data input.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    return Distribution(
        contextlib.nullcontext(),
        num_replicas=jax.device_count(),
        name="multiworker",
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_replicas=jax.local_device_count(),
        batch_multiple=jax.local_device_count(),
    )


def set_precision(precision: str) -> None:
    """float32, mixed_float16 (Keras wraps the optimizer in loss scaling) or mixed_bfloat16."""
    keras.mixed_precision.set_global_policy(precision)


@contextlib.contextmanager
def precision_policy(precision: str):
    """Keras' global dtype policy set to `precision` inside, the previous one after."""
    previous = keras.mixed_precision.global_policy()
    set_precision(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def seed_everything(seed: int, deterministic: bool) -> None:
    """One seed for Python, NumPy and the backend; optionally deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
