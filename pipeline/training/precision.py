"""Which precision a run trains in: `training.precision = "auto"` resolved on this machine.

bfloat16 keeps float32's range (no loss scaling) and halves the bytes each step moves;
where the hardware multiplies it natively it can nearly double the step
(bench/step.py measures it beside float32). "auto" picks `mixed_bfloat16` there:
a CPU with AMX or AVX512_BF16 on TensorFlow (oneDNN runs its bfloat16 kernels), or a
GPU of compute capability 8.0 or later; float32 everywhere else. The choice, and why,
is printed at the start, written to run_info.json, and the resolved precision is
written into the run's config.json, so that a resume keeps the run's own precision
even on a machine that would choose another.
"""

from pathlib import Path

AUTO = "auto"
BFLOAT16 = "mixed_bfloat16"
FLOAT32 = "float32"
# CPU flags (/proc/cpuinfo) of native bfloat16 arithmetic: AMX tiles, or AVX-512's
# bfloat16 dot products.
BFLOAT16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# Ampere (8.0) and later multiply bfloat16 in their tensor cores.
BFLOAT16_GPU_CAPABILITY = (8, 0)
# bfloat16's fast path on a CPU is oneDNN, which a network with a stage narrower than
# this trains without (pipeline/framework.py: it crashed there): float32 for them.
NARROWEST_BFLOAT16_CPU_STAGE = 16


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags of this machine's CPU (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def choose_precision(
    setting: str,
    *,
    backend: str,
    gpu_capability: tuple[int, int] | None,
    flags: frozenset,
    narrowest_stage: int | None = None,
) -> tuple[str, str]:
    """The precision to train in and why, in words. `gpu_capability` is the first GPU's
    compute capability (None: no GPU); `flags` are the CPU's flags; `narrowest_stage`
    the fewest channels of a stage of the network (None: not known)."""
    if setting != AUTO:
        return setting, "set in the config"
    if gpu_capability is not None:
        shown = ".".join(map(str, gpu_capability))
        if tuple(gpu_capability) >= BFLOAT16_GPU_CAPABILITY:
            return BFLOAT16, f"auto: the GPU (compute capability {shown}) runs bfloat16 natively"
        return FLOAT32, f"auto: the GPU (compute capability {shown}) has no native bfloat16"
    native = sorted(flags & BFLOAT16_CPU_FLAGS)
    if not native:
        return FLOAT32, "auto: this CPU has no native bfloat16 (no AMX or AVX512_BF16)"
    if backend != "tensorflow":
        # Measured faster on TensorFlow's oneDNN kernels only (bench/step.py).
        return FLOAT32, f"auto: bfloat16 on {backend}'s CPU path is not measured faster"
    if narrowest_stage is not None and narrowest_stage < NARROWEST_BFLOAT16_CPU_STAGE:
        return FLOAT32, (
            f"auto: a stage of {narrowest_stage} channels, narrower than "
            f"{NARROWEST_BFLOAT16_CPU_STAGE}: TensorFlow trains it without oneDNN, "
            f"bfloat16's fast path on a CPU"
        )
    return BFLOAT16, f"auto: this CPU runs bfloat16 natively ({', '.join(native)})"


def gpu_capability(backend: str) -> tuple[int, int] | None:
    """The compute capability of the first GPU the backend sees (None: none, or a GPU
    that does not say)."""
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        return tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    if backend == "jax":
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        capability = getattr(gpus[0], "compute_capability", None) if gpus else None
        return tuple(int(part) for part in str(capability).split(".")) if capability else None
    if backend == "torch":
        import torch

        return torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    return None


def check_same_precision(distribution, precision: str) -> None:
    """Workers of one run train in one precision: "auto" on machines of other hardware
    could choose differently (a collective call, made by every worker)."""
    from pipeline.config import PRECISIONS
    from pipeline.errors import UserError

    if not distribution.same_on_every_process((PRECISIONS.index(precision),)):
        raise UserError(
            f"the workers chose different precisions (this one {precision}): their "
            f"hardware differs; set training.precision to one of float32, mixed_bfloat16"
        )


def resolve_precision(setting: str, network=None) -> tuple[str, str]:
    """choose_precision with this machine's facts (the backend is loaded by now) for
    `network` (a ResNetSpec; None: not known)."""
    import keras

    backend = keras.backend.backend()
    capability = gpu_capability(backend) if setting == AUTO else None
    narrowest = min(network.filters[1:]) if network is not None else None
    return choose_precision(
        setting,
        backend=backend,
        gpu_capability=capability,
        flags=cpu_flags(),
        narrowest_stage=narrowest,
    )
