"""The rate of every step: schedules, and --lr changes rescaling what is left of them."""

import dataclasses
import json

import numpy as np
import pytest

from pipeline.config import TrainingConfig
from pipeline.errors import UserError
from pipeline.runs.learning_rate import (
    RateChange,
    RateNeeded,
    continue_rate,
    rate_at,
    with_change,
    with_changes_up_to,
)
from pipeline.runs.schedules import (
    cosine_with_warmup,
    multistep_decay,
    polynomial_decay,
    scheduled_rate,
    step_decay,
)

BATCHES = 100  # batches per epoch


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


def training(**fields):
    return TrainingConfig(learning_rate=0.1, **fields)


def at(config, epoch, batch=0):
    return rate_at(config, epoch, batch, BATCHES)


def test_scheduled_rate_works_in_epochs_and_iterations():
    assert scheduled_rate(training(schedule="plateau"), 3, 0, BATCHES) is None
    assert at(training(schedule="constant"), 7, 5) == pytest.approx(0.1)
    by_epoch = training(schedule="step", step_every=2, decay_factor=0.1)
    assert at(by_epoch, 1, 99) == pytest.approx(0.1) and at(by_epoch, 2) == pytest.approx(0.01)
    iterations = training(schedule="multistep", milestones=(150,), milestone_unit="iterations")
    assert at(iterations, 1, 49) == pytest.approx(0.1)
    assert at(iterations, 1, 50) == pytest.approx(0.01)
    epochs = training(schedule="multistep", milestones=(1,), milestone_unit="epochs")
    assert at(epochs, 0, 99) == pytest.approx(0.1) and at(epochs, 1) == pytest.approx(0.01)
    polynomial = training(schedule="polynomial", epochs=4)
    assert at(polynomial, 0) == at(polynomial, 0, 99) == pytest.approx(0.1)
    assert at(polynomial, 1) == pytest.approx(0.075)
    cosine = training(schedule="cosine", epochs=4)
    assert at(cosine, 2) == pytest.approx(0.05)


def changed(config, epoch, batch, rate):
    return dataclasses.replace(
        config, rate_changes=({"epoch": epoch, "batch": batch, "rate": rate},)
    )


def test_constant_schedule_trains_at_the_new_rate_from_the_change_on():
    config = changed(training(schedule="constant"), 3, 40, 0.01)
    assert at(config, 3, 39) == pytest.approx(0.1)
    assert at(config, 3, 40) == at(config, 9, 0) == pytest.approx(0.01)


def test_step_schedule_keeps_the_new_rate_until_the_next_decay():
    config = changed(training(schedule="step", step_every=10, decay_factor=0.1), 13, 0, 0.05)
    assert at(config, 13) == at(config, 19, 99) == pytest.approx(0.05)
    assert at(config, 20) == pytest.approx(0.005) and at(config, 30) == pytest.approx(0.0005)


def test_multistep_in_iterations_rescales_from_the_change():
    base = training(schedule="multistep", milestones=(500, 800), milestone_unit="iterations")
    config = changed(base, 6, 0, 0.002)  # iteration 600: base rate 0.01 there
    assert at(config, 6) == at(config, 7, 99) == pytest.approx(0.002)
    assert at(config, 8) == pytest.approx(0.0002)


def test_polynomial_decays_from_the_new_rate_to_zero():
    config = changed(training(schedule="polynomial", epochs=10, decay_power=2.0), 4, 0, 0.01)
    remaining = [(1 - epoch / 10) ** 2 / (1 - 4 / 10) ** 2 for epoch in range(4, 10)]
    np.testing.assert_allclose([at(config, epoch) for epoch in range(4, 10)],
                               np.multiply(0.01, remaining))  # fmt: skip


def test_cosine_is_the_rest_of_the_curve_rescaled_to_start_at_the_new_rate():
    base = training(schedule="cosine", epochs=10, warmup_epochs=1)
    config = changed(base, 5, 50, 0.02)
    ratio = 0.02 / at(base, 5, 50)
    assert at(config, 5, 50) == 0.02
    for epoch, batch in [(5, 51), (7, 0), (9, 99)]:
        assert at(config, epoch, batch) == pytest.approx(at(base, epoch, batch) * ratio)
    # Before the change, the schedule as configured.
    assert at(config, 5, 49) == at(base, 5, 49)


def test_plateau_sets_the_rate_at_the_change_and_leaves_it_to_the_plateau_logic_after():
    config = changed(training(schedule="plateau"), 2, 7, 0.03)
    assert at(config, 2, 7) == 0.03
    assert at(config, 2, 8) is None and at(config, 0) is None


def test_a_later_change_replaces_the_earlier_one():
    config = with_change(
        with_change(
            training(schedule="step", step_every=4, decay_factor=0.5), RateChange(2, 0, 0.04)
        ),
        RateChange(5, 10, 0.001),
    )
    assert at(config, 3) == pytest.approx(0.04) and at(config, 4) == pytest.approx(0.02)
    assert at(config, 5, 10) == 0.001 and at(config, 8) == pytest.approx(0.0005)


def test_going_back_drops_the_changes_made_after_the_checkpoint():
    config = with_change(with_change(training(), RateChange(2, 0, 0.04)), RateChange(5, 0, 0.01))
    assert [item["epoch"] for item in with_changes_up_to(config, (4, 0)).rate_changes] == [2]
    assert [item["epoch"] for item in with_changes_up_to(config, (5, 0)).rate_changes] == [2, 5]
    # A new change at a position replaces the one there and drops those after it.
    again = with_change(config, RateChange(2, 0, 0.07))
    assert again.rate_changes == ({"epoch": 2, "batch": 0, "rate": 0.07},)


@pytest.mark.parametrize(
    "changes, message",
    [
        ([{"epoch": 1, "batch": 0}], "exactly the keys"),
        ([{"epoch": -1, "batch": 0, "rate": 0.1}], "whole numbers >= 0"),
        ([{"epoch": 1, "batch": 0, "rate": float("nan")}], "finite number > 0"),
        ([{"epoch": 1, "batch": 0, "rate": 0}], "finite number > 0"),
        ([{"epoch": 2, "batch": 0, "rate": 0.1}, {"epoch": 1, "batch": 5, "rate": 0.1}], "after"),
    ],
)
def test_bad_rate_changes_are_refused(changes, message):
    with pytest.raises(UserError, match=message):
        TrainingConfig(rate_changes=tuple(changes))


def test_a_change_at_the_start_of_a_warm_up_is_refused():
    with pytest.raises(UserError, match="warm-up"):
        TrainingConfig(
            schedule="cosine",
            warmup_epochs=2,
            rate_changes=({"epoch": 0, "batch": 0, "rate": 1.0},),
        )


def test_non_finite_rates_are_refused():
    with pytest.raises(UserError, match="finite"):
        TrainingConfig(learning_rate=float("inf"))


def test_unknown_schedule_is_refused_by_the_config():
    with pytest.raises(UserError, match="training.schedule"):
        TrainingConfig(schedule="sawtooth")


# A change of the curve itself on a resume (--epochs, --set, a rewind): one rule.
CURVES = {
    "step": dict(schedule="step", step_every=2.0, decay_factor=0.5),
    "multistep": dict(schedule="multistep", milestones=(2.0, 4.0)),
    "polynomial": dict(schedule="polynomial", decay_power=2.0),
    "cosine": dict(schedule="cosine", warmup_epochs=1.0, min_learning_rate=0.0),
}


def epoch_rates(config, epochs):
    """The rate of each epoch's first batch, as history.json records it."""
    return [rate_at(config, epoch, 0, BATCHES) for epoch in range(epochs)]


def extended(recorded, position, epochs, learning_rate=None):
    """The training config after a resume at `position` with --epochs `epochs`; a refusal
    is followed as its advice says (--lr at the rate of the last epoch trained)."""
    given = dataclasses.replace(recorded, epochs=epochs)
    try:
        return continue_rate(recorded, given, position, learning_rate, BATCHES)[0], False
    except RateNeeded as needed:
        assert needed.changed == {"epochs": (recorded.epochs, epochs)}
        assert needed.last_rate == rate_at(recorded, position[0] - 1, 0, BATCHES)
        return continue_rate(recorded, given, position, needed.last_rate, BATCHES)[0], True


def reproduced(training):
    """The training config read back from the config.json the run writes."""
    from pipeline.config import ExperimentConfig, config_from_values

    saved = json.loads(ExperimentConfig(training=training).to_json())
    return config_from_values(saved).training


@pytest.mark.parametrize("name", sorted(CURVES))
def test_a_finished_run_extended_with_epochs_never_jumps_and_its_config_reproduces_it(name):
    recorded = training(epochs=6, **CURVES[name])
    before = epoch_rates(recorded, 6)
    after, refused = extended(recorded, (6, 0), 10)
    # A curve that decayed to 0 is refused, naming the rate of its last epoch.
    assert refused == (name in ("polynomial", "cosine"))
    rates = before + [rate_at(after, epoch, 0, BATCHES) for epoch in range(6, 10)]
    assert rates[:6] == epoch_rates(after, 6)  # the epochs trained keep their rates
    decaying = rates[1:] if name == "cosine" else rates  # (after the warm-up)
    assert all(
        later <= earlier * (1 + 1e-12)
        for earlier, later in zip(decaying, decaying[1:], strict=False)
    )
    assert epoch_rates(reproduced(after), 10) == rates


@pytest.mark.parametrize("name", sorted(CURVES))
def test_lengthening_or_shortening_a_running_schedule_goes_on_from_its_rate(name):
    recorded = training(epochs=8, **CURVES[name])
    for epochs in (4, 6, 12):
        after, refused = extended(recorded, (3, 40), epochs)
        assert not refused
        assert rate_at(after, 3, 40, BATCHES) == pytest.approx(rate_at(recorded, 3, 40, BATCHES))
        full = [rate_at(after, e, b, BATCHES) for e in range(epochs) for b in (0, 40, 99)]
        assert [rate_at(reproduced(after), e, b, BATCHES) for e in range(epochs)
                for b in (0, 40, 99)] == full  # fmt: skip
        if name != "multistep":  # multistep's milestones do not move with epochs
            assert full[-1] <= rate_at(recorded, 3, 40, BATCHES)


def test_lr_with_epochs_sets_the_rate_and_keeps_the_earlier_curve():
    recorded = training(epochs=6, schedule="cosine")
    after, change = continue_rate(
        recorded, dataclasses.replace(recorded, epochs=10), (6, 0), 0.02, BATCHES
    )
    assert change.rate == 0.02 and change.before == {"epochs": 6}
    assert epoch_rates(after, 6) == epoch_rates(recorded, 6)
    assert rate_at(after, 6, 0, BATCHES) == 0.02 and rate_at(after, 9, 0, BATCHES) < 0.02


def test_a_resume_that_changes_nothing_records_nothing():
    recorded = training(epochs=6, schedule="cosine")
    after, change = continue_rate(recorded, recorded, (3, 0), None, BATCHES)
    assert change is None and after == recorded


def test_a_change_records_only_valid_curve_settings():
    good = {"epoch": 2, "batch": 0, "rate": 0.05, "before": {"epochs": 4}}
    assert training(epochs=6, schedule="cosine", rate_changes=(good,)).rate_changes == (good,)
    for before, message in (
        ({"seed": 1}, "before must be a table"),
        ({}, "before must be a table"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"epochs": "six"}, "must be of type int"),
    ):
        with pytest.raises(UserError, match=message):
            training(schedule="cosine", rate_changes=({**good, "before": before},))


def test_a_recorded_change_beyond_its_epoch_is_one_line_naming_the_file():
    from pipeline.runs.start_config import check_changes_inside_epochs

    config = training(rate_changes=({"epoch": 1, "batch": 15, "rate": 0.01},))
    check_changes_inside_epochs(config, 16, "run/config.json")
    with pytest.raises(UserError, match=r"in run/config.json: batch 15 lies beyond epoch 2, "):
        check_changes_inside_epochs(config, 10, "run/config.json")


def test_a_rewind_past_a_new_starting_rate_goes_on_at_the_rate_the_checkpoint_had():
    # A run at 0.1 resumed at epoch 30 with training.learning_rate = 0.2, then taken back
    # to epoch 10: nothing asks for 0.2 there, so epoch 11 trains as epoch 10 left it.
    first = training(epochs=40, schedule="cosine")
    asked, _ = continue_rate(
        first, dataclasses.replace(first, learning_rate=0.2), (30, 0), None, BATCHES
    )
    assert rate_at(asked, 30, 0, BATCHES) == pytest.approx(rate_at(first, 30, 0, BATCHES) * 2)
    back = with_changes_up_to(asked, (10, 0))
    after, change = continue_rate(asked, back, (10, 0), None, BATCHES)
    assert change.before == {"learning_rate": 0.1}
    assert rate_at(after, 10, 0, BATCHES) == pytest.approx(rate_at(first, 10, 0, BATCHES))
    assert epoch_rates(after, 10) == pytest.approx(epoch_rates(first, 10))


def test_every_setting_a_change_replaced_is_recorded_so_later_changes_keep_the_past():
    # step (every 10) -> cosine at 15, then cosine's step_every changed at 25: epochs
    # 1-15 still read back as the step schedule they trained with.
    step = training(epochs=40, schedule="step", step_every=10.0, decay_factor=0.5)
    cosine, _ = continue_rate(
        step, dataclasses.replace(step, schedule="cosine"), (15, 0), None, BATCHES
    )
    later, _ = continue_rate(
        cosine, dataclasses.replace(cosine, step_every=5.0), (25, 0), None, BATCHES
    )
    assert epoch_rates(reproduced(later), 15) == epoch_rates(step, 15)
    assert epoch_rates(reproduced(later), 25) == epoch_rates(cosine, 25)


def test_a_segment_is_checked_with_its_own_settings_not_the_final_ones():
    # Lengthened from 10 to 20 epochs, then given a 15-epoch warm-up: valid, since the
    # 10-epoch segment had no such warm-up.
    longer = {"epoch": 5, "batch": 0, "rate": 0.05, "before": {"epochs": 10}}
    warmer = {"epoch": 8, "batch": 0, "rate": 0.04, "before": {"warmup_epochs": 0.0}}
    training(epochs=20, schedule="cosine", warmup_epochs=15.0, rate_changes=(longer, warmer))
    # A segment that never was valid (a forged entry) is refused, naming the entry.
    with pytest.raises(UserError, match="the curve before entry .*warmup_epochs"):
        training(epochs=20, schedule="cosine", warmup_epochs=15.0, rate_changes=(longer,))


def test_a_plateau_run_switched_to_a_curve_asks_for_the_rate():
    plateau = training(epochs=10, schedule="plateau")
    with pytest.raises(RateNeeded) as needed:
        continue_rate(plateau, dataclasses.replace(plateau, schedule="cosine"), (4, 0), None, 10)
    assert "plateau" in needed.value.why
