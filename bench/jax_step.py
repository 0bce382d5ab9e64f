"""Training speed on JAX: the compiled step (training.jit_compile = "auto") against
Keras' op-by-op step (jit_compile = false, the pipeline's default before "auto").

    .venv/bin/python bench/jax_step.py [--preset resnet20] [--batches 8] [--batch-size 64]

Both variants train the same preset on the same random 32x32 images in one
process; each gets one epoch to warm up (compilation), then the best of 3 timed
epochs. Prints images per second for each and the ratio.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported

import argparse  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.models import resolve_jit_compile  # noqa: E402
from pipeline.nn import build_preset  # noqa: E402

TIMED_EPOCHS = 3


def images_per_second(preset: str, jit_compile: bool, images, labels, batch_size: int) -> float:
    keras.utils.set_random_seed(0)
    model = build_preset(preset, num_classes=10, input_shape=images.shape[1:])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0)  # warm-up
    best = float("inf")
    for _ in range(TIMED_EPOCHS):
        start = time.perf_counter()
        model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="resnet20")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        raise SystemExit(f"this bench measures the JAX backend, not {keras.backend.backend()}")
    rng = np.random.default_rng(0)
    count = args.batches * args.batch_size
    images = rng.random((count, 32, 32, 3), dtype=np.float32) * 255
    labels = rng.integers(0, 10, count)
    compiled = images_per_second(
        args.preset, resolve_jit_compile("auto"), images, labels, args.batch_size
    )
    op_by_op = images_per_second(args.preset, False, images, labels, args.batch_size)
    print(f"{args.preset}, batch {args.batch_size}, best of {TIMED_EPOCHS} epochs:")
    print(f"  compiled step (jit_compile=auto): {compiled:8.1f} images/s")
    print(f"  op by op      (jit_compile=false): {op_by_op:8.1f} images/s")
    print(f"  ratio: {compiled / op_by_op:.2f}x")


if __name__ == "__main__":
    main()
