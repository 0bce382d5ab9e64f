"""One prepared check of the pipeline on an accelerator: training speed by model, batch
and precision; the loader against the step; fit's overhead; the demo's wall time.

    KERAS_BACKEND=jax python bench/device_check.py --output DIR            # the GPU check
    KERAS_BACKEND=jax python bench/device_check.py --output DIR --quick    # small, any machine

Figures go to DIR/device_check.json after every measurement, and a table to
DIR/device_check.txt at the end. The check stops starting new measurements once
--budget seconds have passed; the same command again (same DIR) measures only what
is missing, so a check cut short by its time limit resumes in parts. --parts picks
some of: training, loader, fit, demo.

- training: images/s of the compiled train step (SGD with momentum, the model's
  normalisation inside, uint8 batches already on the device), per preset, batch
  size and precision; mixed precision against float32 for each.
- loader: images/s of HDF5DatasetGenerator (pad 4, crop, flip) on a generated
  50,000-image 32x32 split, in memory and out of core, with 1, 4 and 8 threads
  as Keras' PyDataset workers run it, set against the step's images/s: whether
  the accelerator would wait for data, and by how much.
- fit: one `fit` epoch of resnet20 (batch 128) fed by the loader from that split,
  against the same number of steps on batches already on the device.
- demo: build, train and evaluate the digits demo (train.py's defaults), start to
  report, in fresh processes as a user runs them.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # the lent GPU machine has no TensorFlow

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.framework import load_keras  # noqa: E402

keras = load_keras()  # quietly: no framework start-up lines (PIPELINE_VERBOSE=1 shows them)

from pipeline.datasets.hdf5_writer import SplitWriter  # noqa: E402
from pipeline.io import HDF5DatasetGenerator, LoaderOptions  # noqa: E402
from pipeline.models import resolve_jit_compile  # noqa: E402
from pipeline.nn import ResNetSpec, build_preset, build_resnet  # noqa: E402
from pipeline.training.distribute import set_precision  # noqa: E402

RESULTS_FILE, TABLE_FILE = "device_check.json", "device_check.txt"
PARTS = ("training", "loader", "fit", "demo")
PAD_CROP_FLIP = [{"name": "pad_crop", "pad": 4}, {"name": "flip"}]
MEAN, STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)


class Sizes:
    """What the check measures: the GPU's sizes, or --quick's small ones."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        if quick:
            self.models = ("tiny",)
            self.batches = (16,)
            self.precisions = ("float32", "mixed_bfloat16")
            self.timed_steps, self.warm_steps = 3, 1
            self.split_samples, self.loader_batches = 1024, 8
            self.loader_workers = (1, 2)
            self.fit_model, self.fit_batch = "tiny", 64
            self.demo_options = ["--epochs", "1", "--set", TINY_SPEC_OPTION]
        else:
            # The comparison the issue asks for first, then the rest, mixed_float16 last.
            first = [("resnet110", 512, "float32"), ("resnet110", 512, "mixed_bfloat16")]
            self.models = ("resnet20", "resnet56", "resnet110", "preact_resnet164")
            self.batches = (128, 512)
            self.precisions = ("float32", "mixed_bfloat16", "mixed_float16")
            self.first = first
            self.timed_steps, self.warm_steps = 30, 5
            self.split_samples, self.loader_batches = 50_000, 100
            self.loader_workers = (1, 4, 8)
            self.fit_model, self.fit_batch = "resnet20", 128
            self.demo_options = []

    def training_cases(self):
        """(model, batch, precision) in the order they are measured."""
        cases = list(getattr(self, "first", []))
        for precision in self.precisions:
            for model in self.models:
                for batch in self.batches:
                    if (model, batch, precision) not in cases:
                        cases.append((model, batch, precision))
        return cases


TINY_SPEC = ResNetSpec(block="basic", stages=(1, 1), filters=(8, 8, 16), stem="cifar")
TINY_SPEC_OPTION = 'model.spec={ block = "basic", stages = [1, 1], filters = [8, 8, 16] }'


# -- records ----------------------------------------------------------------------------


class Results:
    """The JSON file of one check: measurements by part and name, kept after each one."""

    def __init__(self, folder: Path, machine: dict, fresh: bool) -> None:
        self.path = folder / RESULTS_FILE
        self.data = {"machine": machine, "parts": {}}
        if self.path.is_file() and not fresh:
            previous = json.loads(self.path.read_text())
            if previous.get("machine", {}).get("devices") != machine["devices"]:
                raise SystemExit(
                    f"{self.path} holds figures of another machine "
                    f"({previous.get('machine', {}).get('devices')}); use another --output "
                    f"folder or --fresh"
                )
            self.data["parts"] = previous.get("parts", {})
        self.save()

    def has(self, part: str, name: str) -> bool:
        return name in self.data["parts"].get(part, {})

    def put(self, part: str, name: str, value) -> None:
        self.data["parts"].setdefault(part, {})[name] = value
        self.save()

    def save(self) -> None:
        temporary = self.path.with_suffix(".json.partial")
        temporary.write_text(json.dumps(self.data, indent=2))
        temporary.replace(self.path)


class Budget:
    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def spent(self) -> bool:
        return self.seconds is not None and time.perf_counter() - self.start > self.seconds


def machine_description() -> dict:
    devices = [str(device) for device in _backend_devices()]
    return {
        "date": datetime.date.today().isoformat(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "devices": devices,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def _backend_devices():
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [keras.backend.backend()]


# -- training -------------------------------------------------------------------------


def build_model(name: str, input_shape=(32, 32, 3)):
    if name == "tiny":
        return build_resnet(
            TINY_SPEC, num_classes=10, input_shape=input_shape, mean=MEAN, std=STD, name="tiny"
        )
    return build_preset(name, num_classes=10, input_shape=input_shape, mean=MEAN, std=STD)


def compiled_model(name: str, precision: str):
    set_precision(precision)
    keras.utils.set_random_seed(0)
    model = build_model(name)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=resolve_jit_compile("auto"),
    )
    return model


def device_batch(batch: int, seed: int = 0):
    """A random uint8 batch and its labels, on the backend's default device."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch).astype(np.int32)
    return keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)


def step_rate(model, batch: int, sizes: Sizes) -> tuple[float, float]:
    """(images/s of the train step, seconds of the first step: compilation)."""
    images, labels = device_batch(batch)
    start = time.perf_counter()
    model.train_on_batch(images, labels)
    first = time.perf_counter() - start
    for _ in range(sizes.warm_steps):
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(sizes.timed_steps):
        logs = model.train_on_batch(images, labels, return_dict=True)
    float(logs["loss"])  # the last step has finished
    return batch * sizes.timed_steps / (time.perf_counter() - start), first


def measure_training(results: Results, sizes: Sizes, budget: Budget) -> None:
    for model_name, batch, precision in sizes.training_cases():
        name = f"{model_name} b{batch} {precision}"
        if results.has("training", name):
            continue
        if budget.spent():
            return
        try:
            model = compiled_model(model_name, precision)
            rate, compile_seconds = step_rate(model, batch, sizes)
            value = {"images_per_second": rate, "first_step_seconds": compile_seconds}
        except Exception as error:  # e.g. out of memory: recorded, the check goes on
            value = {"error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"}
        finally:
            set_precision("float32")
        results.put("training", name, value)
        print(f"training {name}: {_figure(value)}", flush=True)


# -- loader and fit ---------------------------------------------------------------------


def write_split(path: Path, num_samples: int) -> Path:
    """A CIFAR-like split: smooth random 32x32 images, 10 classes."""
    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    with SplitWriter(
        path, image_shape=(32, 32, 3), class_names=[str(c) for c in range(10)],
        split="train", source="device_check",
    ) as writer:  # fmt: skip
        for start in range(0, num_samples, 10_000):
            count = min(10_000, num_samples - start)
            small = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
            writer.add(
                np.repeat(np.repeat(small, 4, axis=1), 4, axis=2), rng.integers(0, 10, count)
            )
        writer.finish(MEAN, STD, covariance=np.eye(3) * 3600)
    return path


def loader_rate(split: Path, storage: str, workers: int, batch: int, sizes: Sizes) -> float:
    """Images/s of the loader serving fresh batches with `workers` threads (Keras'
    PyDataset workers are threads calling __getitem__)."""
    generator = HDF5DatasetGenerator(
        split, LoaderOptions(batch_size=batch, seed=0, augment=PAD_CROP_FLIP, storage=storage)
    )
    count = min(sizes.loader_batches, len(generator))
    generator[0]  # read the split (memory) or open the file before timing
    generator.set_epoch(1)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        served = sum(len(labels) for _, labels in pool.map(generator.__getitem__, range(count)))
    return served / (time.perf_counter() - start)


def measure_loader(results: Results, sizes: Sizes, budget: Budget, split: Path) -> None:
    for storage in ("memory", "disk"):
        for workers in sizes.loader_workers:
            name = f"{storage} workers={workers}"
            if results.has("loader", name) or budget.spent():
                continue
            rate = loader_rate(split, storage, workers, sizes.fit_batch, sizes)
            results.put("loader", name, {"images_per_second": rate})
            print(f"loader {name}: {rate:,.0f} images/s", flush=True)


def measure_fit(results: Results, sizes: Sizes, budget: Budget, split: Path) -> None:
    """One fit epoch fed by the loader against the same steps on device batches."""
    if results.has("fit", "epoch") or budget.spent():
        return
    workers = max(sizes.loader_workers)
    generator = HDF5DatasetGenerator(
        split,
        LoaderOptions(
            batch_size=sizes.fit_batch,
            seed=0,
            augment=PAD_CROP_FLIP,
            storage="memory",
            workers=workers,
        ),
    )
    model = compiled_model(sizes.fit_model, "float32")
    model.fit(generator, epochs=1, verbose=0, steps_per_epoch=2)  # compile
    start = time.perf_counter()
    model.fit(generator, epochs=1, verbose=0)
    fit_seconds = time.perf_counter() - start
    steps = len(generator)
    images, labels = device_batch(sizes.fit_batch)
    model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_on_batch(images, labels, return_dict=True)
    float(logs["loss"])
    step_seconds = time.perf_counter() - start
    value = {
        "model": sizes.fit_model,
        "batch": sizes.fit_batch,
        "steps": steps,
        "loader_workers": workers,
        "fit_epoch_seconds": fit_seconds,
        "device_steps_seconds": step_seconds,
        "overhead": fit_seconds / step_seconds - 1,
    }
    results.put("fit", "epoch", value)
    print(f"fit: {fit_seconds:.2f} s for {steps} steps, {step_seconds:.2f} s on device batches")


# -- demo ---------------------------------------------------------------------------------


def measure_demo(results: Results, sizes: Sizes, budget: Budget, scratch: Path) -> None:
    if results.has("demo", "wall") or budget.spent():
        return
    data, run = scratch / "digits", scratch / "run"
    steps = {
        "build": ["build_dataset.py", "--dataset", "digits", "--output", str(data), "--overwrite"],
        "train": ["train.py", "--checkpoints", str(run), "--overwrite",
                  "--set", f"data.dataset_dir={data}", *sizes.demo_options],
        "evaluate": ["rank_accuracy.py", "--checkpoints", str(run)],
    }  # fmt: skip
    seconds, output = {}, ""
    for step, arguments in steps.items():
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, str(REPO / arguments[0]), *arguments[1:]],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        seconds[step] = time.perf_counter() - start
        if completed.returncode != 0:
            results.put("demo", "wall", {"error": f"{step}: {completed.stderr[-500:]}"})
            return
        output = completed.stdout
    rank_1 = next((line for line in output.splitlines() if "rank-1" in line), "").strip()
    value = {"seconds": seconds, "total_seconds": sum(seconds.values()), "rank_1": rank_1}
    results.put("demo", "wall", value)
    print(f"demo: {value['total_seconds']:.1f} s start to report ({rank_1})", flush=True)


# -- the table ----------------------------------------------------------------------------


def _figure(value: dict) -> str:
    if "error" in value:
        return f"failed ({value['error']})"
    return f"{value['images_per_second']:,.0f} images/s"


def table(data: dict) -> str:
    """The measurements as text: what the README's 'On a GPU' section shows."""
    machine, parts = data["machine"], data["parts"]
    devices = machine["devices"]
    more = f" and {len(devices) - 1} more" if len(devices) > 1 else ""
    lines = [
        f"{machine['date']}, Keras {machine['keras']} on {machine['backend']}, "
        f"{devices[0] if devices else 'no device'}{more}, {machine['cpu_count']} CPUs",
        "",
        "training step, images/s (uint8 batches on the device, compiled step):",
    ]
    training = parts.get("training", {})
    for name, value in training.items():
        line = f"  {name:36} {_figure(value)}"
        model_batch, precision = name.rsplit(" ", 1)
        base = training.get(f"{model_batch} float32", {})
        if precision != "float32" and "images_per_second" in value and "images_per_second" in base:
            line += f"   {value['images_per_second'] / base['images_per_second']:.2f}x float32"
        lines.append(line)
    loader = parts.get("loader", {})
    if loader:
        step = _fit_step_rate(data)
        lines.append(
            "loader, pad-crop-flip, images/s" + (f" (the step: {step:,.0f}):" if step else ":")
        )
        for name, value in loader.items():
            rate = value["images_per_second"]
            verdict = ""
            if step:
                verdict = (
                    "   keeps up"
                    if rate >= step
                    else f"   the step waits {1 - rate / step:.0%} of the time"
                )
            lines.append(f"  {name:36} {rate:12,.0f}{verdict}")
    if "fit" in parts:
        fit = parts["fit"]["epoch"]
        lines.append(
            f"fit epoch of {fit['model']} (batch {fit['batch']}, {fit['steps']} steps, loader "
            f"with {fit['loader_workers']} workers): {fit['fit_epoch_seconds']:.2f} s; the same "
            f"steps on device batches {fit['device_steps_seconds']:.2f} s; overhead "
            f"{fit['overhead']:+.0%}"
        )
    if "demo" in parts:
        demo = parts["demo"]["wall"]
        if "error" in demo:
            lines.append(f"digits demo: failed ({demo['error']})")
        else:
            steps = ", ".join(
                f"{step} {seconds:.1f} s" for step, seconds in demo["seconds"].items()
            )
            lines.append(f"digits demo, start to report: {demo['total_seconds']:.1f} s ({steps})")
            lines.append(f"  {demo['rank_1']}")
    return "\n".join(lines)


def _fit_step_rate(data: dict) -> float | None:
    """Images/s of the step the loader feeds in the fit part (for the loader's verdict)."""
    fit = data["parts"].get("fit", {}).get("epoch")
    if fit:
        return fit["batch"] * fit["steps"] / fit["device_steps_seconds"]
    return None


# -- main -------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", required=True, help="folder for the JSON and the table")
    parser.add_argument("--quick", action="store_true", help="small sizes, for any machine")
    parser.add_argument("--parts", default=",".join(PARTS), help="some of " + ",".join(PARTS))
    parser.add_argument("--budget", type=float, help="seconds before no new measurement starts")
    parser.add_argument("--fresh", action="store_true", help="forget figures already in --output")
    parser.add_argument(
        "--scratch", help="folder for the generated split (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    parts = [part for part in args.parts.split(",") if part]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = Sizes(args.quick)
    results = Results(folder, machine_description(), args.fresh)
    budget = Budget(args.budget)
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        scratch = Path(scratch)
        split = None
        if "loader" in parts or "fit" in parts:
            split = write_split(scratch / "train.h5", sizes.split_samples)
        if "training" in parts:
            measure_training(results, sizes, budget)
        if "fit" in parts:
            measure_fit(results, sizes, budget, split)
        if "loader" in parts:
            measure_loader(results, sizes, budget, split)
        if "demo" in parts:
            measure_demo(results, sizes, budget, scratch)
    text = table(results.data)
    (folder / TABLE_FILE).write_text(text + "\n")
    print(text)
    if budget.spent():
        print("stopped at --budget: run the same command again to measure the rest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
