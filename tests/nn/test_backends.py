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


REPO = Path(__file__).resolve().parents[2]
TINY = 'model.spec={ block = "bottleneck", stages = [1], filters = [8, 8] }'


def run_script(arguments, backend, cwd):
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=dict(os.environ, KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_the_demo_path_runs_on_torch(tmp_path):
    """build, train (with a ctrl+c-style resume) and evaluate with KERAS_BACKEND=torch."""
    data, run = tmp_path / "digits", tmp_path / "run"
    steps = [
        ["build_dataset.py", "--dataset", "digits", "--output", str(data)],
        ["train.py", "--checkpoints", str(run), "--epochs", "1", "--set", TINY,
         "--set", f"data.dataset_dir={data}", "--set", "training.batch_size=256"],
        ["train.py", "--checkpoints", str(run), "--resume", "--epochs", "2", "--lr", "0.01"],
        ["rank_accuracy.py", "--checkpoints", str(run), "--split", "test"],
    ]  # fmt: skip
    for step in steps:
        completed = run_script([str(REPO / step[0]), *step[1:]], "torch", REPO)
        assert completed.returncode == 0, (step, completed.stderr[-3000:])
    assert "rank-1" in completed.stdout
    assert (run / "epoch_0002.keras").exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_torch_without_torch_installed_is_one_line(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not read: the backend is checked first")
    completed = run_script([str(REPO / "rank_accuracy.py"), "--model", str(model)], "torch", REPO)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: KERAS_BACKEND=torch needs the torch package, which is not installed: "
        "pip install torch, or unset KERAS_BACKEND to use TensorFlow"
    ]
