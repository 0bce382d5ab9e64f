"""Loading Keras and its backend quietly, once, with a one-line error for a missing backend.

TensorFlow prints start-up lines on stderr whatever TF_CPP_MIN_LOG_LEVEL says (oneDNN,
"Could not find cuda drivers", absl's warning) and a cuInit error on its first op, so
that a user error would not be one line. The scripts load Keras through `load_keras()`,
which hides them; PIPELINE_VERBOSE=1 shows them again.
"""

import contextlib
import importlib.util
import os
import sys
import tempfile

from pipeline.errors import UserError

VERBOSE_VARIABLE = "PIPELINE_VERBOSE"
# Keras' backends and the module each needs.
BACKEND_MODULES = {
    "tensorflow": "tensorflow",
    "jax": "jax",
    "torch": "torch",
    "numpy": "numpy",
    "openvino": "openvino",
}


# oneDNN, TensorFlow's CPU kernels, corrupted the heap ("double free or corruption", a
# crash, not an error) training ResNets with a stage narrower than this many channels:
# TF 2.21 on an AVX512 CPU, float32 and bfloat16 alike, basic-block stages of 2 to 12
# channels; TF_ENABLE_ONEDNN_OPTS=0 trained them. Such networks train without it.
NARROWEST_ONEDNN_STAGE = 16
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def avoid_onednn_crash(narrowest_stage: int) -> str | None:
    """Turn oneDNN off for a network whose narrowest stage has `narrowest_stage` channels,
    where that is below NARROWEST_ONEDNN_STAGE, TensorFlow is the backend and is not
    loaded yet, and the user has not set TF_ENABLE_ONEDNN_OPTS. Returns a note saying
    what was done (None: nothing to do)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if narrowest_stage >= NARROWEST_ONEDNN_STAGE or backend != "tensorflow":
        return None
    if ONEDNN_VARIABLE in os.environ:
        return None
    why = (
        f"a stage of {narrowest_stage} channels: oneDNN (TensorFlow's CPU kernels) crashed "
        f"training stages narrower than {NARROWEST_ONEDNN_STAGE}"
    )
    if "tensorflow" in sys.modules:
        return f"{why}; TensorFlow is loaded already, so it stays on ({ONEDNN_VARIABLE}=0 before)"
    os.environ[ONEDNN_VARIABLE] = "0"
    return f"{why}, so it is off ({ONEDNN_VARIABLE}=0)"


def verbose() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0")


def load_keras():
    """Import Keras with its backend (KERAS_BACKEND, TensorFlow by default); returns it."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    check_backend()
    if verbose():
        import keras

        return keras
    # TF_CPP_MIN_LOG_LEVEL (the cuInit line of the first op) is set by pipeline/__init__.
    with stderr_held() as held:
        try:
            import keras

            _import_tensorflow_beside(keras)
        except BaseException:
            held.replay()
            raise
    return keras


def _import_tensorflow_beside(keras) -> None:
    """Keras imports TensorFlow lazily wherever it is installed, whatever the backend
    (keras.utils.set_random_seed seeds it too), and its start-up lines would come then:
    import it now, while they are held."""
    if keras.backend.backend() != "tensorflow" and importlib.util.find_spec("tensorflow"):
        import tensorflow  # noqa: F401


def check_backend() -> None:
    """A KERAS_BACKEND that is unknown or not installed is a one-line error."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    module = BACKEND_MODULES.get(backend)
    if module is None:
        raise UserError(
            f"KERAS_BACKEND={backend} is not a Keras backend; use one of "
            f"{', '.join(BACKEND_MODULES)}"
        )
    if importlib.util.find_spec(module) is None:
        raise UserError(
            f"KERAS_BACKEND={backend} needs the {module} package, which is not installed: "
            f"pip install {module}, or unset KERAS_BACKEND to use TensorFlow"
        )


class _Held:
    def __init__(self, handle) -> None:
        self.handle = handle

    def replay(self) -> None:
        """Write what was held back to stderr (when the import itself failed)."""
        self.handle.seek(0)
        sys.stderr.write(self.handle.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def stderr_held():
    """Send file descriptor 2 (where the C++ libraries write) to a temporary file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as handle:
        os.dup2(handle.fileno(), 2)
        try:
            yield _Held(handle)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
