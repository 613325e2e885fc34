"""What analytics answer: a journey's funnel, its attribution, an experiment's readout.

Counts are of runs (a push to three devices is one run reaching the step), except an
experiment's `users`, which counts people: a user's arm is the same on every entry.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class JourneySummary(BaseModel):
    """A journey's runs in total: how many entered, are still open, converted."""

    name: str
    entered: int
    open: int
    converted: int


class StepStats(BaseModel):
    """One send step of a journey: how many runs reached it and what became of the send.

    `sent` counts runs whose message left Nudge (sent, delivered or undelivered by receipt);
    `delivered` those with a delivery receipt; `clicked` a human click on a tracked link;
    `opened` an open reported by an app; `deferred` a send held by quiet hours or a cap
    before it went (it is also counted in its final state); `suppressed` by reason.
    """

    step: str
    reached: int
    sent: int = 0
    delivered: int = 0
    clicked: int = 0
    opened: int = 0
    failed: int = 0
    deferred: int = 0
    suppressed: dict[str, int] = Field(default_factory=dict)


class AttributionRow(BaseModel):
    """Conversions credited to a step's template. `last_touch`: the run's last delivered
    message before the goal; `any_touch`: every delivered message within the goal window
    (one conversion may count for several rows)."""

    step: str
    template: str | None
    last_touch: int = 0
    any_touch: int = 0


class JourneyStats(BaseModel):
    """A journey's funnel for the runs that entered in [`since`, `until`) (UTC), optionally
    of one code version (build id) and one experiment arm."""

    journey: str
    since: datetime | None = None
    until: datetime | None = None
    version: str | None = None
    variant: str | None = None
    entered: int = 0
    open: int = 0
    exited: dict[str, int] = Field(default_factory=dict)
    """Runs ended early, by reason: the `exit_on` event, or `terminated` / `failed`."""
    finished: dict[str, int] = Field(default_factory=dict)
    """Runs that completed, by the outcome their journey returned."""
    converted: int = 0
    """Runs whose goal event came within the goal window."""
    steps: list[StepStats] = Field(default_factory=list)
    """Send steps in the order runs first reached them."""
    attribution: list[AttributionRow] = Field(default_factory=list)
    variants: list[str] = Field(default_factory=list)
    """The experiment arms seen among these runs."""


class Arm(BaseModel):
    """One arm of an experiment against the control.

    `rate` = conversions / users. `lift` is relative: rate / control rate - 1, with its
    95% confidence interval [`ci_low`, `ci_high`] (Katz log method for the rate ratio);
    `p_value` is the two-sided two-proportion z test (pooled; the same as χ² without
    continuity correction); `prob_beat_control` is P(rate > control rate) under
    independent Beta(1 + conversions, 1 + users - conversions) posteriors (exact). All
    None for the control itself, or when a rate is zero. `lift_vs_holdout` is the lift
    against the holdout (what the messages do at all), when there is one.
    """

    variant: str
    users: int
    conversions: int
    rate: float
    lift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    prob_beat_control: float | None = None
    lift_vs_holdout: float | None = None
    holdout: bool = False


class ExperimentReadout(BaseModel):
    """An experiment's arms, users and conversions (runs that entered since `since`)."""

    experiment: str
    journey: str | None
    control: str | None
    since: datetime | None = None
    arms: list[Arm] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    """Why not to trust the readout yet: too few users or conversions in an arm."""
