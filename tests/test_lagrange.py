"""The Lagrange utilities on hand-computed cases: signs, projection, the PID terms, state round trips."""

from __future__ import annotations

import pytest

from rlft_gym.lagrange import Lagrange, PIDLagrangian


def test_lagrange_sgd_steps_by_hand():
    lag = Lagrange(cost_limit=0.2, lagrangian_multiplier_init=1.0, lambda_lr=0.1, lambda_optimizer="SGD")
    assert lag.update_lagrange_multiplier(0.7) == pytest.approx(1.05)  # 1 + 0.1 * (0.7 - 0.2)
    assert lag.update_lagrange_multiplier(0.0) == pytest.approx(1.03)  # 1.05 + 0.1 * (0.0 - 0.2)


def test_lagrange_stays_in_its_range():
    low = Lagrange(cost_limit=0.2, lagrangian_multiplier_init=0.01, lambda_lr=0.1, lambda_optimizer="SGD")
    assert low.update_lagrange_multiplier(0.0) == 0.0  # 0.01 - 0.02 projected onto lambda >= 0
    high = Lagrange(
        cost_limit=0.0,
        lagrangian_multiplier_init=4.99,
        lambda_lr=0.1,
        lambda_optimizer="SGD",
        lagrangian_upper_bound=5.0,
    )
    assert high.update_lagrange_multiplier(1.0) == pytest.approx(5.0)  # 5.09 clipped to the upper bound


def test_lagrange_is_well_defined_at_a_zero_limit():
    lag = Lagrange(cost_limit=0.0, lagrangian_multiplier_init=0.5, lambda_lr=0.1, lambda_optimizer="SGD")
    assert lag.update_lagrange_multiplier(0.0) == pytest.approx(0.5)  # no cost, no change
    assert lag.update_lagrange_multiplier(0.3) == pytest.approx(0.53)


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_lambda_rises_above_the_limit_and_falls_below_it(optimizer):
    lag = Lagrange(cost_limit=0.2, lagrangian_multiplier_init=1.0, lambda_lr=0.05, lambda_optimizer=optimizer)
    ups = [lag.update_lagrange_multiplier(0.6) for _ in range(5)]
    downs = [lag.update_lagrange_multiplier(0.05) for _ in range(20)]
    assert all(b > a for a, b in zip([1.0, *ups], ups))
    if optimizer == "SGD":
        assert all(b < a for a, b in zip([ups[-1], *downs], downs))
    else:  # Adam's momentum (beta1 0.9) carries lambda up for a few steps after the cost drops, then it falls
        assert all(b < a for a, b in zip(downs[10:], downs[11:]))


def test_pid_lagrangian_by_hand():
    pid = PIDLagrangian(cost_limit=0.2)  # kp 0.1, ki 0.01, kd 0.01, EMA 0.95, init 0.001
    assert pid.pid_update(0.7) == pytest.approx(0.1 * 0.025 + 0.006 + 0.01 * 0.035)
    # I 0.011; P EMA 0.95 * 0.025 + 0.05 * 0.5; cost EMA 0.95 * 0.035 + 0.05 * 0.7, D against the first (0.0)
    assert pid.pid_update(0.7) == pytest.approx(0.1 * 0.04875 + 0.011 + 0.01 * 0.06825)


def test_pid_integral_never_goes_negative_and_the_penalty_falls_below_the_limit():
    pid = PIDLagrangian(cost_limit=0.5, lagrangian_multiplier_init=0.0)
    for _ in range(3):
        pid.pid_update(0.9)
    high = pid.value
    for _ in range(30):
        pid.pid_update(0.0)
    assert pid.pid_i == 0.0 and pid.value < high


def test_pid_penalty_is_capped_without_normalisation():
    pid = PIDLagrangian(cost_limit=0.0, pid_ki=10.0, sum_norm=False, penalty_max=2.0)
    assert pid.pid_update(1.0) == 2.0


@pytest.mark.parametrize("make", [lambda: Lagrange(0.1, 1.0, 0.05), lambda: PIDLagrangian(0.1)])
def test_state_round_trip_gives_the_same_next_update(make):
    a = make()
    for c in (0.5, 0.4, 0.0):
        a.update_lagrange_multiplier(c) if isinstance(a, Lagrange) else a.pid_update(c)
    b = make()
    b.load_state_dict(a.state_dict())
    step = (lambda x, c: x.update_lagrange_multiplier(c)) if isinstance(a, Lagrange) else (lambda x, c: x.pid_update(c))
    assert step(a, 0.3) == pytest.approx(step(b, 0.3), abs=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cost_limit": -0.1}, "cost_limit=-0.1 must be a finite number >= 0"),
        ({"cost_limit": 0.1, "lambda_lr": 0}, "lambda_lr=0 must be a positive finite number"),
        ({"cost_limit": 0.1, "lambda_optimizer": "Nope"}, "lambda_optimizer='Nope' is not one of"),
        ({"cost_limit": 0.1, "lagrangian_upper_bound": -1.0}, "lagrangian_upper_bound=-1.0 must be a positive"),
    ],
)
def test_bad_lagrange_settings_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Lagrange(**kwargs)
