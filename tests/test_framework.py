"""Loading the framework: oneDNN turned off for the narrow networks it crashed on."""

import sys

import pytest

from pipeline import framework


@pytest.fixture
def fresh_tensorflow(monkeypatch):
    """TensorFlow the backend, not yet loaded, TF_ENABLE_ONEDNN_OPTS not set."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delenv(framework.ONEDNN_VARIABLE, raising=False)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    return monkeypatch


def test_a_narrow_network_turns_onednn_off_before_tensorflow_loads(fresh_tensorflow):
    note = framework.avoid_onednn_crash(8)
    assert "a stage of 8 channels" in note and "it is off" in note
    import os

    assert os.environ[framework.ONEDNN_VARIABLE] == "0"


def test_a_wide_network_or_another_backend_leaves_it_alone(fresh_tensorflow):
    import os

    assert framework.avoid_onednn_crash(16) is None
    fresh_tensorflow.setenv("KERAS_BACKEND", "jax")
    assert framework.avoid_onednn_crash(4) is None
    assert framework.ONEDNN_VARIABLE not in os.environ


def test_the_users_own_setting_is_kept(fresh_tensorflow):
    import os

    fresh_tensorflow.setenv(framework.ONEDNN_VARIABLE, "1")
    assert framework.avoid_onednn_crash(4) is None
    assert os.environ[framework.ONEDNN_VARIABLE] == "1"


def test_once_tensorflow_is_loaded_the_note_says_it_stays_on(fresh_tensorflow):
    import os

    fresh_tensorflow.setitem(sys.modules, "tensorflow", object())
    note = framework.avoid_onednn_crash(4)
    assert "stays on" in note and framework.ONEDNN_VARIABLE not in os.environ
