"""The models are backend-agnostic Keras 3: the same presets build, train, save and load on JAX."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import numpy as np, keras
from pipeline.nn import build_preset
from pipeline.models import load_model
assert keras.backend.backend() == "jax"
mean_image = np.full((32, 32, 3), 100.0, "float32")
for options in ({}, {"mean_image": mean_image}):
    model = build_preset("resnet20", 10, **options)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    model.fit(images, np.arange(8) % 10, epochs=1, verbose=0)
    model.save("{path}")
    restored = load_model("{path}")
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(restored.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_presets_train_save_and_load_on_jax(tmp_path):
    script = SCRIPT.replace("{path}", str(tmp_path / "model.keras"))
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=dict(os.environ, KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().endswith("ok")
