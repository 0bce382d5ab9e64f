"""Distribution, precision and determinism: the backend-specific corner of the pipeline.

TensorFlow-only code (tf.distribute strategies, op determinism) lives here
and nowhere else; on JAX, several devices train through Keras' DataParallel.
"""

import contextlib
import dataclasses

import keras

from pipeline.errors import UserError


@dataclasses.dataclass
class Distribution:
    """How training is spread: a scope to build the model in, and the number of replicas."""

    scope: contextlib.AbstractContextManager
    num_replicas: int = 1
    name: str = "none"


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
        # Measured here with TensorFlow 2.21 and Keras 3.15: two workers on loopback fail
        # in the first train step ("Attempt to convert a value (PerReplica ...) to a
        # Tensor"), the open Keras issue keras-team/keras#20585. Refused clearly rather
        # than started and crashed.
        raise UserError(
            "training.distribute = 'multiworker' does not work with Keras 3's fit on "
            "TensorFlow (keras-team/keras#20585); train on one machine with 'mirrored'"
        )
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if kind == "auto" and len(tf.config.list_logical_devices("GPU")) < 2:
        return Distribution(contextlib.nullcontext())
    strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    return Distribution(
        strategy.scope(), num_replicas=strategy.num_replicas_in_sync, name="mirrored"
    )


def _jax_distribution(kind: str) -> Distribution:
    import jax

    if kind == "multiworker":
        raise UserError("multi-worker training is supported on the TensorFlow backend only")
    devices = jax.devices()
    if len(devices) < 2:
        return Distribution(contextlib.nullcontext())
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return Distribution(contextlib.nullcontext(), num_replicas=len(devices), name="data_parallel")


def set_precision(precision: str) -> None:
    """float32, mixed_float16 (Keras wraps the optimizer in loss scaling) or mixed_bfloat16."""
    keras.mixed_precision.set_global_policy(precision)


def seed_everything(seed: int, deterministic: bool) -> None:
    """One seed for Python, NumPy and the backend; optionally deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
