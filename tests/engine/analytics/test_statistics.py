"""The experiment statistics against examples worked by hand (pure; no database).

Control 100/1000 (10%), arm 130/1000 (13%):
- pooled rate 230/2000 = 0.115; SE = sqrt(0.115 * 0.885 * (1/1000 + 1/1000)) = 0.0142671;
  z = 0.03 / 0.0142671 = 2.10274; two-sided p = 2 * (1 - Phi(2.10274)) = 0.035488.
- lift = 0.13 / 0.10 - 1 = 0.30; Katz log interval of the ratio 1.3:
  SE(log) = sqrt(1/130 - 1/1000 + 1/100 - 1/1000) = 0.125269;
  exp(ln 1.3 -/+ 1.959964 * 0.125269) = [1.016984, 1.661776], so lift in [0.016984, 0.661776].
Bayes, one user each: Beta(2, 1) (1 of 1) against Beta(1, 2) (0 of 1):
  P = int_0^1 2p * (2p - p^2) dp = 4/3 - 1/2 = 5/6.
"""

from __future__ import annotations

import pytest

from engine.analytics.experiments import arms_of, compare, prob_beat, warnings_for


def test_lift_interval_and_p_value_match_the_hand_computation() -> None:
    lift, low, high, p = compare(130, 1000, 100, 1000)
    assert lift == pytest.approx(0.30)
    assert low == pytest.approx(0.016984, abs=2e-6)
    assert high == pytest.approx(0.661776, abs=2e-6)
    assert p == pytest.approx(0.035488, abs=2e-6)


def test_probability_to_beat_control_is_exact() -> None:
    assert prob_beat(1, 1, 0, 1) == pytest.approx(5 / 6)
    assert prob_beat(0, 1, 1, 1) == pytest.approx(1 / 6)
    assert prob_beat(40, 400, 40, 400) == pytest.approx(0.5)
    assert prob_beat(130, 1000, 100, 1000) == pytest.approx(0.98, abs=0.01)


def test_a_readout_orders_arms_and_measures_the_holdout() -> None:
    counts = {"holdout": (100, 5), "content": (1000, 130), "discount": (1000, 100)}
    control, content, holdout = arms_of(counts, ["discount", "content"], "discount")
    assert [a.variant for a in (control, content, holdout)] == ["discount", "content", "holdout"]
    assert control.lift is None and control.p_value is None and control.rate == 0.1
    assert content.lift == pytest.approx(0.30) and content.prob_beat_control is not None
    assert holdout.holdout and holdout.lift == pytest.approx(-0.5)
    # Against the holdout (5%): discount doubles it, content 2.6x.
    assert control.lift_vs_holdout == pytest.approx(1.0)
    assert content.lift_vs_holdout == pytest.approx(1.6)
    warnings = warnings_for([control, content, holdout])
    assert warnings == [
        "arm 'holdout' has 100 users (fewer than 500): too early to trust",
        "arm 'holdout' has 5 conversions (fewer than 25): too early to trust",
    ]


def test_zero_rates_leave_lift_and_test_undefined() -> None:
    assert compare(0, 10, 0, 10) == (None, None, None, None)
    lift, low, high, p = compare(0, 100, 10, 100)
    assert lift == pytest.approx(-1.0) and low is None and high is None and p is not None
