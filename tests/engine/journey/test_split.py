"""engine.journey.split: deterministic arms from (experiment, user), weights, the holdout,
and `Variant.pick`. Pure."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.journey.split import HOLDOUT, Variant, assign

USERS = [f"u_{n:06d}" for n in range(10_000)]


@given(experiment=st.text(max_size=20), user=st.text(max_size=30))
def test_the_same_experiment_and_user_always_get_the_same_arm(experiment: str, user: str) -> None:
    arms = {"a": 1.0, "b": 2.0}
    first = assign(experiment, user, arms, holdout=0.2)
    assert assign(experiment, user, arms, holdout=0.2) == first
    assert first.name in ("a", "b", HOLDOUT)
    assert first.arms == ("a", "b") and first.experiment == experiment


def test_arms_follow_their_weights_over_many_users() -> None:
    counts = Counter(assign("weights", u, {"a": 1, "b": 3}).name for u in USERS)
    assert set(counts) == {"a", "b"}
    assert counts["b"] / len(USERS) == pytest.approx(0.75, abs=0.02)


def test_the_holdout_takes_its_fraction_and_the_rest_split_evenly() -> None:
    counts = Counter(assign("held", u, ("a", "b"), holdout=0.1).name for u in USERS)
    assert counts[HOLDOUT] / len(USERS) == pytest.approx(0.1, abs=0.01)
    assert counts["a"] / len(USERS) == pytest.approx(0.45, abs=0.02)
    assert counts["b"] / len(USERS) == pytest.approx(0.45, abs=0.02)


def test_experiments_assign_independently() -> None:
    one = [assign("one", u, ("a", "b")).name for u in USERS[:2000]]
    two = [assign("two", u, ("a", "b")).name for u in USERS[:2000]]
    same = sum(x == y for x, y in zip(one, two, strict=True)) / len(one)
    assert same == pytest.approx(0.5, abs=0.05)


def test_a_tuple_of_names_means_equal_weights() -> None:
    for user in USERS[:200]:
        assert assign("x", user, ("a", "b")) == assign("x", user, {"a": 1.0, "b": 1.0})


@pytest.mark.parametrize(
    ("arms", "holdout"),
    [
        ({}, 0.0),
        ({"a": 0.0}, 0.0),
        ({"a": -1.0, "b": 1.0}, 0.0),
        ({"holdout": 1.0, "b": 1.0}, 0.0),
        ({"a": 1.0}, 1.0),
        ({"a": 1.0}, -0.1),
    ],
)
def test_bad_arms_or_holdout_are_refused(arms: dict[str, float], holdout: float) -> None:
    with pytest.raises(ValueError):
        assign("x", "u", arms, holdout=holdout)


def test_pick_gives_the_value_of_the_arm_and_the_control_to_the_holdout() -> None:
    arms = ("discount", "content")
    assert Variant("x", "content", arms).pick(discount=1, content=2) == 2
    held = Variant("x", HOLDOUT, arms)
    assert held.in_holdout and held.pick(discount=1, content=2) == 1
    assert str(held) == HOLDOUT


def test_pick_needs_exactly_the_arms() -> None:
    variant = Variant("offer", "a", ("a", "b"))
    with pytest.raises(ValueError, match=r"missing: \['b'\]"):
        variant.pick(a=1)
    with pytest.raises(ValueError, match=r"unknown: \['c'\]"):
        variant.pick(a=1, b=2, c=3)
    with pytest.raises(ValueError, match="'offer'"):
        variant.pick()
