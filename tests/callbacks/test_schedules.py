import numpy as np
import pytest

from pipeline.callbacks.schedules import (
    cosine_with_warmup,
    make_schedule,
    multistep_decay,
    polynomial_decay,
    step_decay,
)
from pipeline.config import TrainingConfig


def test_polynomial_decay_is_linear_to_zero_with_power_one():
    rates = [polynomial_decay(epoch, initial_rate=0.1, total_epochs=4) for epoch in range(5)]
    np.testing.assert_allclose(rates, [0.1, 0.075, 0.05, 0.025, 0.0])


def test_polynomial_decay_with_power_two():
    assert polynomial_decay(1, initial_rate=1.0, total_epochs=2, power=2.0) == pytest.approx(0.25)


def test_step_decay():
    rates = [step_decay(epoch, initial_rate=1.0, every=2, factor=0.5) for epoch in range(5)]
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_multistep_is_the_papers_cifar_schedule():
    # He et al. 2015: 0.1, divided by 10 at 32k and 48k iterations.
    def rate(step):
        return multistep_decay(step, initial_rate=0.1, milestones=(32000, 48000), factor=0.1)

    assert rate(31999) == pytest.approx(0.1)
    assert rate(32000) == pytest.approx(0.01)
    assert rate(48000) == pytest.approx(0.001)


def test_cosine_warms_up_linearly_then_decays_to_the_minimum():
    def rate(position):
        return cosine_with_warmup(position, initial_rate=1.0, total=10, warmup=2, minimum=0.1)

    assert rate(0) == 0 and rate(1) == pytest.approx(0.5) and rate(2) == pytest.approx(1.0)
    assert rate(6) == pytest.approx(0.55)
    assert rate(10) == pytest.approx(0.1)


def schedule(**fields):
    return make_schedule(TrainingConfig(**fields), steps_per_epoch=100, initial_rate=0.1)


def test_make_schedule_works_in_steps_and_epochs():
    assert schedule(schedule="constant") is None
    assert schedule(schedule="plateau") is None
    by_epoch = schedule(schedule="step", step_every=2, decay_factor=0.1)
    assert by_epoch(199) == pytest.approx(0.1) and by_epoch(200) == pytest.approx(0.01)
    iterations = schedule(schedule="multistep", milestones=(150,), milestone_unit="iterations")
    assert iterations(149) == pytest.approx(0.1) and iterations(150) == pytest.approx(0.01)
    epochs = schedule(schedule="multistep", milestones=(1,), milestone_unit="epochs")
    assert epochs(99) == pytest.approx(0.1) and epochs(100) == pytest.approx(0.01)
    polynomial = schedule(schedule="polynomial", epochs=4)
    assert polynomial(0) == polynomial(99) == pytest.approx(0.1)
    assert polynomial(100) == pytest.approx(0.075)


def test_unknown_schedule_is_refused_by_the_config():
    from pipeline.errors import UserError

    with pytest.raises(UserError, match="training.schedule"):
        TrainingConfig(schedule="sawtooth")
