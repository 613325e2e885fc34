"""Journey inputs and results (workflow and activity payloads)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from schemas.common import Channel, RunStatus, SendStatus
from schemas.events import JourneyEvent


class JourneyEntry(BaseModel):
    """The input of every journey run.

    `user_id` is Nudge's internal id (never an email or phone number). `settings` holds
    overrides of the journey's settings (from `nudge.toml` or a test) as plain values.
    `carried` is set only on a run that continues an earlier one (continue-as-new).
    """

    journey: str
    user_id: str
    key: str | None = None
    event: JourneyEvent
    settings: dict[str, Any] = Field(default_factory=dict)
    # Whether the server has Nudge's search attributes (`nudge temporal setup`).
    search_attributes: bool = True
    carried: CarriedState | None = None


class JourneyResult(BaseModel):
    """What a run ends with."""

    status: RunStatus = RunStatus.COMPLETED
    outcome: str
    sent: int = 0
    converted: bool = False


class SendResult(BaseModel):
    """What `Journey.send` returns: `sent`, `suppressed` (with a reason) or `failed`.

    `deferred` is true when quiet hours or a cap held the message before it was sent.
    """

    status: SendStatus
    reason: str | None = None
    message_ids: list[str] = Field(default_factory=list)
    deferred: bool = False

    @property
    def sent(self) -> bool:
        return self.status is SendStatus.SENT


class StepRecord(BaseModel):
    """One step a run took, kept so a run continued as new can fast-forward through its
    own code to where it was. `until` is the deadline of a wait or sleep (UTC); a record
    without `done` is the step the run was in when it continued as new."""

    kind: str
    name: str
    done: bool = False
    until: datetime | None = None
    event: JourneyEvent | None = None
    send: SendResult | None = None
    flag: bool | None = None


class CarriedState(BaseModel):
    """What a run hands to its continuation (continue-as-new): compact, no event log."""

    entered_at: datetime
    steps: list[StepRecord] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    pending: list[JourneyEvent] = Field(default_factory=list)
    sent: int = 0
    last_message_id: str | None = None
    converted: bool = False
    variant: str | None = None
    holdout: bool = False
    received: int = 0
    continued: int = 0
    wait_keeps_after_answer: bool = False
    """The run follows the `wait-for-keeps-after-answer` rule (absent in states carried by
    older code: those runs keep the rule they started with)."""


class DeliverRequest(BaseModel):
    """Input of the delivery activity. `idempotency_key` is derived from the workflow id,
    the run's first execution id and the step, so retries and replays reuse it."""

    idempotency_key: str
    user_id: str
    journey: str
    workflow_id: str
    step: str
    template: str
    channel: Channel
    transactional: bool = False
    context: dict[str, Any] = Field(default_factory=dict)
    entry_event: JourneyEvent | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    # Set when the run already held the message once (quiet hours / cap deferral).
    deferrals: int = 0
    holdout: bool = False
    variant: str | None = None
    # A test send (`nudge send-test`): its rows belong to no journey (`journey` only finds
    # the template) and say `test`.
    test: bool = False
    # The run's first execution id: the funnel joins messages to their run by it.
    run_id: str | None = None
    # The journey's clock when it asked (workflow time; ahead of the wall clock under
    # Temporal time skipping). Policy windows and message stamps follow it.
    at: datetime | None = None
    # SMS lanes: the provider this call may use (on that provider's task queue), and
    # whether a later lane remains to fail over to.
    provider: str | None = None
    last_lane: bool = True


class SmsLanesRequest(BaseModel):
    """Input of `nudge.sms_lanes`: whose phone, and which lane (marketing or transactional)."""

    user_id: str
    transactional: bool = False


class SmsLanes(BaseModel):
    """The SMS providers for a user's number in route order, each with its task queue;
    empty when lanes are off (or there is no number): one delivery call does it all."""

    providers: list[str] = Field(default_factory=list)
    queues: list[str] = Field(default_factory=list)


class DeliverOutcome(BaseModel):
    """Result of the delivery activity.

    Either final (`result`) or a request to hold the message until `defer_until` (UTC)
    and call again: holding is the workflow's job, as a durable timer.
    """

    result: SendResult | None = None
    defer_until: datetime | None = None
    defer_reason: str | None = None
    skipped: bool = False
    """The lane's provider is down, its circuit open, throttling or it refused: try the
    next lane (nothing was sent)."""


class RunStarted(BaseModel):
    workflow_id: str
    run_id: str
    journey: str
    user_id: str
    version: str | None = None


class RunFinished(BaseModel):
    workflow_id: str
    run_id: str
    status: RunStatus
    outcome: str
    step: str | None = None
    variant: str | None = None
    # The run's clock (workflow time) when it ended.
    at: datetime | None = None


class GoalReached(BaseModel):
    workflow_id: str
    run_id: str
    journey: str
    user_id: str
    event: JourneyEvent
    last_message_id: str | None = None
    at: datetime | None = None


class VariantAssigned(BaseModel):
    """`split` assigned the run an arm: recorded on the run's row at once (not only when it
    ends), with the experiment's arms, so readouts know the control (the first arm)."""

    workflow_id: str
    run_id: str
    journey: str
    experiment: str
    variant: str
    arms: list[str]
    holdout: float = 0.0
    at: datetime | None = None


class UserZoneRequest(BaseModel):
    user_id: str


class UserZone(BaseModel):
    timezone: str


JourneyEntry.model_rebuild()
