import subprocess
import sys

import pytest

from pipeline.config import DEFAULT_CONFIG_PATH, ExperimentConfig, load_config
from pipeline.errors import UserError


def test_default_preset_is_the_digits_demo():
    config = load_config()
    assert config.name == "digits"
    assert config.data.dataset_dir == "output/datasets/digits"
    assert config.checkpoints == "output/checkpoints"
    assert config.model.spec["block"] == "bottleneck"
    assert config.model.normalization == "channel"


def test_overrides_apply_on_top_of_the_preset_with_toml_types():
    config = load_config(
        None,
        [
            "training.epochs=3",
            "training.learning_rate=0.5",
            "model.preset=resnet20",
            "model.spec={ l2 = 1e-3 }",
            "data.dataset_dir=/some/where",
            "training.nesterov=false",
        ],
    )
    assert config.training.epochs == 3
    assert config.training.learning_rate == 0.5
    assert config.model.preset == "resnet20"
    assert config.model.spec == {"l2": 1e-3}
    assert config.data.dataset_dir == "/some/where"
    assert config.training.nesterov is False


def test_integer_is_accepted_where_a_float_is_expected():
    assert load_config(None, ["training.learning_rate=1"]).training.learning_rate == 1.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.epoch=3", "unknown config key 'training.epoch'"),
        ("nonsense=1", "unknown config key 'nonsense'"),
        ("training.epochs=three", "training.epochs"),
        ("training.epochs=true", "training.epochs"),
        ("training.epochs=0", "training.epochs must be >= 1"),
        ("training.learning_rate=-0.1", "learning_rate must be a finite number > 0"),
        ("training.learning_rate=nan", "learning_rate must be a finite number > 0"),
        ("model.normalization=pixel", "model.normalization must be"),
        ("model.spec=3", "model.spec"),
        ("epochs", "must look like section.key=value"),
        ("training.jit_compile=1", "must be of type bool or str"),
        ("training.jit_compile=yes", "training.jit_compile must be true, false or 'auto'"),
        # A negative factor or minimum would train at a negative rate.
        ("training.decay_factor=-1", r"decay_factor must be in \(0, 1\]"),
        ("training.decay_factor=1.5", r"decay_factor must be in \(0, 1\]"),
        ("training.min_learning_rate=-1", "min_learning_rate must be >= 0"),
        ("training.min_learning_rate=0.5", "must be below training.learning_rate"),
        ("training.learning_rate=inf", "learning_rate must be a finite number > 0"),
        ("training.momentum=nan", r"momentum must be in \[0, 1\)"),
        ("training.warmup_epochs=-1", "warmup_epochs must be >= 0"),
        ("training.warmup_epochs=500", "warmup_epochs .* must be at most training.epochs"),
        ("training.decay_power=0", "decay_power must be > 0"),
        ("training.milestones=[30, 10]", "milestones must be finite, >= 0 and increasing"),
        ("training.plateau_patience=-2", "plateau_patience must be >= 0"),
        ("data.image_size=-5", "data.image_size must be >= 0"),
        ("data.workers=0", "data.workers must be >= 1"),
        ("data.storage=cloud", "data.storage must be one of"),
        (
            "data.dataset=cifar-10",
            "data.dataset must be one of digits, cifar10, cifar100, tiny-imagenet, caltech256, "
            "folder \\(or \"\" for no check\\), got 'cifar-10'",
        ),
        ("data.num_classes=-1", "data.num_classes must be >= 0"),
        # The network is checked at load, before any data is opened.
        ('model.preset="resnet7"', "unknown model preset 'resnet7'"),
        ('model.spec={ block = "bottlenck", stages = [1], filters = [8, 8] }', "block must be"),
        ('model.spec={ block = "basic" }', "needs stages, filters too"),
        ("model.spec={ depth = 3 }", "model.spec keys depth unknown"),
        ('model.spec={ block = "basic", stages = [1], filters = [8] }', "filters needs 2"),
    ],
)
def test_bad_keys_and_values_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


def test_the_data_set_kind_and_class_count_are_stated_or_left_unchecked():
    assert load_config(None).data.dataset == "digits"
    assert load_config(None).data.num_classes == 10
    unchecked = load_config(None, ['data.dataset=""', "data.num_classes=0"]).data
    assert (unchecked.dataset, unchecked.num_classes) == ("", 0)
    assert (ExperimentConfig().data.dataset, ExperimentConfig().data.num_classes) == ("", 0)


def test_jit_compile_is_auto_by_default_and_takes_true_or_false():
    from pipeline.models import resolve_jit_compile

    assert load_config(None).training.jit_compile == "auto"
    assert load_config(None, ["training.jit_compile=auto"]).training.jit_compile == "auto"
    assert load_config(None, ["training.jit_compile=true"]).training.jit_compile is True
    # The tests run on TensorFlow, where "auto" keeps the plain graph (no XLA).
    assert resolve_jit_compile("auto") is False
    assert resolve_jit_compile(True) is True


def test_unknown_key_in_a_preset_file_names_the_file(tmp_path):
    preset = tmp_path / "bad.toml"
    preset.write_text(DEFAULT_CONFIG_PATH.read_text() + "\n[training.extra]\nx = 1\n")
    with pytest.raises(UserError, match="bad.toml"):
        load_config(preset)


def test_missing_config_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "absent.toml")


def test_resolved_config_round_trips_through_json():
    import json

    from pipeline.config import config_from_dict

    config = load_config(None, ["training.epochs=7"])
    assert config_from_dict(ExperimentConfig, json.loads(config.to_json())) == config


def test_a_config_file_that_is_not_utf8_is_a_one_line_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text"):
        load_config(path)


def test_the_plateau_schedule_needs_a_factor_below_one():
    assert load_config(None, ["training.decay_factor=1"]).training.decay_factor == 1.0
    with pytest.raises(UserError, match="below 1 for the plateau schedule"):
        load_config(None, ["training.decay_factor=1", "training.schedule=plateau"])


def test_checking_a_config_loads_no_framework():
    code = (
        "import sys; from pipeline.config import load_config; "
        "load_config(None).model.network(); "
        "print(sorted({'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
