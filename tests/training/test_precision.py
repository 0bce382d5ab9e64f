"""training.precision = "auto": bfloat16 where the hardware runs it natively, float32
elsewhere, and a resumed run keeps the precision it trained in."""

import json

import pytest

from pipeline.training.precision import AUTO, choose_precision, cpu_flags

SAPPHIRE_RAPIDS = frozenset({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
ZEN4 = frozenset({"avx512f", "avx512_bf16"})
SKYLAKE = frozenset({"avx2", "avx512f", "fma"})


@pytest.mark.parametrize(
    "flags, chosen",
    [(SAPPHIRE_RAPIDS, "mixed_bfloat16"), (ZEN4, "mixed_bfloat16"), (SKYLAKE, "float32")],
)
def test_auto_follows_the_cpu_flags(flags, chosen):
    precision, why = choose_precision(AUTO, backend="tensorflow", gpu_capability=None, flags=flags)
    assert precision == chosen
    assert why.startswith("auto: ")


@pytest.mark.parametrize(
    "capability, chosen",
    [((8, 0), "mixed_bfloat16"), ((9, 0), "mixed_bfloat16"), ((7, 5), "float32")],
)
def test_auto_follows_the_gpu_compute_capability_whatever_the_cpu(capability, chosen):
    precision, why = choose_precision(
        AUTO, backend="jax", gpu_capability=capability, flags=SAPPHIRE_RAPIDS
    )
    assert precision == chosen
    assert ".".join(map(str, capability)) in why


def test_auto_keeps_float32_on_a_cpu_path_not_measured_faster():
    precision, why = choose_precision(AUTO, backend="jax", gpu_capability=None, flags=ZEN4)
    assert precision == "float32" and "jax" in why


@pytest.mark.parametrize(
    "narrowest, chosen", [(8, "float32"), (15, "float32"), (16, "mixed_bfloat16")]
)
def test_auto_keeps_networks_with_a_narrow_stage_in_float32_on_a_cpu(narrowest, chosen):
    # TensorFlow's bfloat16 CPU kernels crashed on stages of fewer than 16 channels.
    precision, why = choose_precision(
        AUTO, backend="tensorflow", gpu_capability=None, flags=ZEN4, narrowest_stage=narrowest
    )
    assert precision == chosen
    if chosen == "float32":
        assert f"a stage of {narrowest} channels" in why
    # A GPU is not concerned.
    on_gpu, _ = choose_precision(
        AUTO, backend="tensorflow", gpu_capability=(8, 0), flags=ZEN4, narrowest_stage=narrowest
    )
    assert on_gpu == "mixed_bfloat16"


def test_a_precision_set_in_the_config_is_kept():
    for setting in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert choose_precision(setting, backend="tensorflow", gpu_capability=None,
                                flags=SKYLAKE) == (setting, "set in the config")  # fmt: skip


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx512_bf16", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_a_resume_with_auto_keeps_the_precision_recorded_by_the_run(tmp_path):
    """A run that trained in bfloat16, resumed with a preset that says "auto" (on a
    machine that would choose float32), goes on in bfloat16, and says so."""
    from pipeline.config import load_config
    from pipeline.runs.run_state import StartPoint
    from pipeline.runs.start_config import config_for_start

    config = load_config(None, ["training.precision=auto"])
    recorded = config.to_dict()
    recorded["training"]["precision"] = "mixed_bfloat16"
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    checkpoint = tmp_path / "epoch_0002.keras"
    checkpoint.write_bytes(b"")
    start = StartPoint(checkpoint=checkpoint, epoch=2, batch=0, state={})
    resumed, notes = config_for_start(config, tmp_path, start, config_given=True)
    assert resumed.training.precision == "mixed_bfloat16"
    assert any("keeps the run's own, mixed_bfloat16" in note for note in notes)
    # A precision the user sets is theirs.
    chosen = load_config(None, ["training.precision=float32"])
    resumed, _ = config_for_start(chosen, tmp_path, start, config_given=True)
    assert resumed.training.precision == "float32"


def test_the_callers_own_keras_policy_is_given_back_after_training():
    """Keras' dtype policy is process-wide: training in bfloat16 from Python must not
    leave a caller's later models in bfloat16 (train() runs the fit inside this)."""
    import keras

    from pipeline.training.distribute import precision_policy

    keras.mixed_precision.set_global_policy("float32")
    with precision_policy("mixed_bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    try:
        with precision_policy("mixed_float16"):
            raise KeyboardInterrupt  # a second ctrl+c leaves the fit this way
    except KeyboardInterrupt:
        pass
    assert keras.mixed_precision.global_policy().name == "float32"
