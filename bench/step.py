"""Training speed by precision: float32 against mixed_bfloat16, in one process, side by side.

    .venv/bin/python bench/step.py [--networks resnet20,preact_resnet164] [--batch-size 128]
        [--batches 8] [--repeats 3] [--demo-epochs 30]

For each network: both precisions train the same random 32x32 images (uint8, as the
loader serves them) with the same optimizer; each model gets one epoch to compile,
then the timed epochs alternate between the precisions (so the shared cores' noise
falls on both alike), and the best epoch of each is reported in images/s with the
ratio. Then the demo (the digits preset, built into a temporary folder) trains
`--demo-epochs` epochs through train.py in each precision, timed as a whole command.
Where PyTorch is installed, its CPU step (autocast bfloat16, channels_last) on a
network of the same depth and widths is printed beside it; where not, that is said.
`training.precision = "auto"` picks bfloat16 only where this benchmark showed it
faster (pipeline/training/precision.py).
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads

import keras  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.nn import build_preset  # noqa: E402
from pipeline.training.precision import cpu_flags  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")


def _model(preset: str, precision: str, batch_size: int):
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = build_preset(preset, num_classes=10, input_shape=(32, 32, 3))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    keras.mixed_precision.set_global_policy("float32")
    return model


def step_speeds(preset: str, batch_size: int, batches: int, repeats: int) -> dict:
    """Best images/s of each precision, timed epochs interleaved."""
    rng = np.random.default_rng(0)
    count = batch_size * batches
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, count)
    models = {precision: _model(preset, precision, batch_size) for precision in PRECISIONS}
    fit = dict(batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    for model in models.values():
        model.fit(images, labels, **fit)  # compile the step
    best = dict.fromkeys(PRECISIONS, float("inf"))
    for _ in range(repeats):
        for precision, model in models.items():
            start = time.perf_counter()
            model.fit(images, labels, **fit)
            best[precision] = min(best[precision], time.perf_counter() - start)
    return {precision: count / seconds for precision, seconds in best.items()}


def demo_seconds(epochs: int, workdir: Path) -> dict:
    """Wall time of train.py on the digits preset in each precision (after one build)."""
    dataset = workdir / "digits"
    run([sys.executable, "build_dataset.py", "--dataset", "digits", "--output", str(dataset)])
    seconds = {}
    for precision in PRECISIONS:
        start = time.perf_counter()
        run([
            sys.executable, "train.py", "--checkpoints", str(workdir / precision),
            "--set", f"data.dataset_dir={dataset}", "--set", f"training.epochs={epochs}",
            "--set", f"training.precision={precision}",
        ])  # fmt: skip
        seconds[precision] = time.perf_counter() - start
    return seconds


def run(command: list[str]) -> None:
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def torch_resnet20(torch):
    """He et al.'s CIFAR ResNet-20 (3 stages of 3 basic blocks, 16/32/64 filters) in
    PyTorch, as a user of that framework would write it."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, width_in, width, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(width_in, width, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.shortcut = nn.Sequential()
            if stride != 1 or width_in != width:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(width_in, width, 1, stride, bias=False), nn.BatchNorm2d(width)
                )

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    width_in = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            layers.append(Block(width_in, width, 2 if stage and not block else 1))
            width_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def torch_images_per_second(torch, bfloat16: bool, batch_size, batches, repeats) -> float:
    torch.manual_seed(0)
    model = torch_resnet20(torch).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.rand(batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,))

    def epoch():
        for _ in range(batches):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        epoch()
        best = min(best, time.perf_counter() - start)
    return batch_size * batches / best


def torch_line(batch_size: int, batches: int, repeats: int) -> str:
    """The peer a user would pick instead: PyTorch's CPU step on ResNet-20."""
    try:
        import torch
    except ImportError:
        return "PyTorch: not installed here, so its CPU step is not measured"
    speeds = {
        name: torch_images_per_second(torch, bf16, batch_size, batches, repeats)
        for name, bf16 in (("float32", False), ("autocast bfloat16", True))
    }
    ratio = speeds["autocast bfloat16"] / speeds["float32"]
    return (
        f"PyTorch {torch.__version__} resnet20 (channels_last): float32 "
        f"{speeds['float32']:.0f} img/s, autocast bfloat16 {speeds['autocast bfloat16']:.0f} "
        f"img/s, ratio {ratio:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="resnet20,preact_resnet164")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo-epochs", type=int, default=30, help="0 leaves the demo out")
    args = parser.parse_args()
    flags = sorted(cpu_flags() & {"amx_bf16", "avx512_bf16"}) or ["none"]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"bfloat16 flags: {', '.join(flags)}; Keras {keras.__version__} on "
        f"{keras.backend.backend()}; batch {args.batch_size}, best of {args.repeats} epochs "
        f"of {args.batches} batches"
    )
    for preset in args.networks.split(","):
        speeds = step_speeds(preset, args.batch_size, args.batches, args.repeats)
        ratio = speeds["mixed_bfloat16"] / speeds["float32"]
        print(
            f"{preset}: float32 {speeds['float32']:.0f} img/s, mixed_bfloat16 "
            f"{speeds['mixed_bfloat16']:.0f} img/s, ratio {ratio:.2f}",
            flush=True,
        )
    if args.demo_epochs:
        with tempfile.TemporaryDirectory() as workdir:
            seconds = demo_seconds(args.demo_epochs, Path(workdir))
        ratio = seconds["float32"] / seconds["mixed_bfloat16"]
        print(
            f"demo ({args.demo_epochs} epochs through train.py): float32 "
            f"{seconds['float32']:.1f} s, mixed_bfloat16 {seconds['mixed_bfloat16']:.1f} s, "
            f"speed-up {ratio:.2f}"
        )
    print(torch_line(args.batch_size, args.batches, args.repeats))


if __name__ == "__main__":
    main()
