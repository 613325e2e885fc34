"""Experiment readouts: users and conversions per arm, lift against the control with a
confidence interval, a two-proportion z test and the Bayesian probability to beat control.

The statistics are statsmodels' and scipy's (`proportions_ztest`,
`confint_proportions_2indep`, `betaln`), not hand-rolled; `stats` below is pure, so a
readout can be checked against a worked example by hand.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from scipy.special import betaln
from sqlalchemy import case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from engine.analytics.models import Arm, ExperimentReadout
from engine.journey.split import HOLDOUT
from engine.store import experiments
from engine.store.models import JourneyRun

MIN_USERS = 500
"""Below this many users in an arm, a readout warns that it is too early to trust."""
MIN_CONVERSIONS = 25
"""Below this many conversions in an arm, likewise."""
ALPHA = 0.05
"""Confidence intervals are 1 - ALPHA (95%)."""


def prob_beat(conversions: int, users: int, control_conversions: int, control_users: int) -> float:
    """P(p > p_control) for independent Beta(1 + x, 1 + n - x) posteriors (uniform prior),
    in closed form (a finite sum over the arm's successes; exact, no sampling)."""
    a_b, b_b = 1 + conversions, 1 + users - conversions
    a_a, b_a = 1 + control_conversions, 1 + control_users - control_conversions
    i = np.arange(a_b, dtype=float)
    terms = betaln(a_a + i, b_a + b_b) - np.log(b_b + i) - betaln(1 + i, b_b) - betaln(a_a, b_a)
    return float(min(1.0, max(0.0, np.exp(terms).sum())))


def compare(
    conversions: int, users: int, control_conversions: int, control_users: int
) -> tuple[float | None, float | None, float | None, float | None]:
    """(lift, ci_low, ci_high, p_value) of an arm against the control. `lift` is relative
    (rate ratio - 1), its interval the Katz log interval of the ratio, minus 1; the p-value
    the pooled two-sided z test. None where a zero rate makes them undefined."""
    if users == 0 or control_users == 0:
        return None, None, None, None
    rate, control = conversions / users, control_conversions / control_users
    lift = ci_low = ci_high = p_value = None
    if control > 0:
        lift = rate / control - 1
        if conversions > 0:
            low, high = confint_proportions_2indep(
                conversions,
                users,
                control_conversions,
                control_users,
                method="log",
                compare="ratio",
                alpha=ALPHA,
            )
            ci_low, ci_high = float(low) - 1, float(high) - 1
    pooled = (conversions + control_conversions) / (users + control_users)
    if 0 < pooled < 1:
        _, p = proportions_ztest([conversions, control_conversions], [users, control_users])
        p_value = float(p)
    return lift, ci_low, ci_high, p_value


def arms_of(
    counts: dict[str, tuple[int, int]], declared: list[str], control: str | None
) -> list[Arm]:
    """The readout's arms from (users, conversions) per variant: the control first, then
    the declared arms, other arms seen, and the holdout last."""
    order = [*declared, *sorted(v for v in counts if v not in declared and v != HOLDOUT)]
    if HOLDOUT in counts:
        order.append(HOLDOUT)
    base = counts.get(control or "", (0, 0))
    hold = counts.get(HOLDOUT)
    arms = []
    for name in order:
        users, conversions = counts.get(name, (0, 0))
        arm = Arm(
            variant=name,
            users=users,
            conversions=conversions,
            rate=conversions / users if users else 0.0,
            holdout=name == HOLDOUT,
        )
        if name != control:
            arm.lift, arm.ci_low, arm.ci_high, arm.p_value = compare(
                conversions, users, base[1], base[0]
            )
            if users and base[0]:
                arm.prob_beat_control = prob_beat(conversions, users, base[1], base[0])
        if hold is not None and name != HOLDOUT and hold[0] and hold[1] and users:
            arm.lift_vs_holdout = arm.rate / (hold[1] / hold[0]) - 1
        arms.append(arm)
    return arms


def warnings_for(arms: list[Arm]) -> list[str]:
    """Minimum-sample warnings, one per arm short of users or conversions."""
    found = []
    for arm in arms:
        if arm.users < MIN_USERS:
            found.append(
                f"arm {arm.variant!r} has {arm.users} users (fewer than {MIN_USERS}): "
                "too early to trust"
            )
        if arm.conversions < MIN_CONVERSIONS:
            found.append(
                f"arm {arm.variant!r} has {arm.conversions} conversions "
                f"(fewer than {MIN_CONVERSIONS}): too early to trust"
            )
    return found


async def experiment_readout(
    session: AsyncSession, name: str, *, since: datetime | None = None
) -> ExperimentReadout:
    """The readout of experiment `name` over runs that entered since `since` (UTC). Users
    are people (a user's arm is the same on every entry); a user converted if any of their
    runs did. The control is the first arm the journey's `split` declared."""
    declared = await experiments.get(session, name=name)
    query = (
        select(
            JourneyRun.variant,
            func.count(distinct(JourneyRun.user_id)),
            func.count(distinct(case((JourneyRun.converted_at.is_not(None), JourneyRun.user_id)))),
        )
        .where(JourneyRun.experiment == name, JourneyRun.variant.is_not(None))
        .group_by(JourneyRun.variant)
    )
    if since is not None:
        query = query.where(JourneyRun.started_at >= since)
    counts = {
        str(variant): (int(users), int(converted))
        for variant, users, converted in await session.execute(query)
    }
    arms_declared = list(declared.arms) if declared is not None else []
    if not arms_declared:
        arms_declared = sorted(v for v in counts if v != HOLDOUT)
    control = arms_declared[0] if arms_declared else None
    arms = arms_of(counts, arms_declared, control)
    warnings = warnings_for(arms)
    if declared is None:
        warnings.insert(0, f"no run was assigned an arm of {name!r} yet")
    return ExperimentReadout(
        experiment=name,
        journey=declared.journey if declared is not None else None,
        control=control,
        since=since,
        arms=arms,
        warnings=warnings,
    )


__all__ = ["MIN_CONVERSIONS", "MIN_USERS", "arms_of", "compare", "experiment_readout", "prob_beat"]
