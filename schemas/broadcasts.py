"""Broadcasts and segments across boundaries: the entry workflow's input and activity
payloads, and the API's bodies."""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum

from pydantic import BaseModel, Field

BROADCAST_EVENT = "Broadcast"
"""The name of the entry event a broadcast gives each run it starts (`entry.event`)."""


class BroadcastStatus(StrEnum):
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    """Between local-time waves, or before `at`."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Wave(BaseModel):
    """Users of these zones are entered from `at` (UTC) on."""

    at: datetime
    zones: list[str | None]


class BroadcastCursor(BaseModel):
    """Where a broadcast is: carried across continue-as-new."""

    waves: list[Wave] = Field(default_factory=list)
    wave: int = 0
    after: str | None = None
    entered: int = 0
    skipped: int = 0


class BroadcastRequest(BaseModel):
    """Input of the `nudge.broadcast` workflow (one per broadcast; its id is
    `broadcast/{broadcast id}`; a schedule's firings add a timestamp).

    `at` (aware) enters everyone from that instant; `local_date` + `local_time` (wall clock)
    enter each user when their own zone reaches it; `local_time` alone (a schedule) takes the
    date of the firing in the earliest zone. `rate`: entries per second (None: as fast as
    Temporal takes them). `cursor` is set only on a continued run.
    """

    journey: str
    segment: str
    at: datetime | None = None
    local_date: date | None = None
    local_time: time | None = None
    rate: float | None = Field(default=None, gt=0)
    default_zone: str = "UTC"
    schedule: str | None = None
    page_size: int = Field(default=200, ge=1, le=5000)
    pages_per_call: int = Field(default=25, ge=1)
    """Pages one activity call enters (heartbeating its cursor after each)."""
    calls_per_run: int = Field(default=20, ge=1)
    """Activity calls before the workflow continues as new."""
    cursor: BroadcastCursor | None = None


class BroadcastBegin(BaseModel):
    broadcast_id: str
    request: BroadcastRequest
    at: datetime


class BroadcastPlan(BaseModel):
    total: int
    zones: dict[str, int]
    """Members per zone ("" for users without one) when the broadcast began."""


class BroadcastPage(BaseModel):
    """Up to `pages` pages of `limit` entries: members after `after` in `zones` (None: all),
    at virtual time `at`."""

    broadcast_id: str
    journey: str
    segment: str
    zones: list[str | None] | None
    after: str | None
    limit: int
    pages: int = 1
    rate: float | None
    at: datetime


class PageDone(BaseModel):
    entered: int
    skipped: int
    last: str | None
    """The last member id entered or looked at; None when there was none."""
    full: bool
    """More members may follow `last` in this wave."""


class BroadcastMark(BaseModel):
    broadcast_id: str
    status: BroadcastStatus
    next_at: datetime | None = None
    at: datetime


class BroadcastIn(BaseModel):
    """`POST /v1/broadcasts`: enter every member of `segment` into `journey`, once.

    `at` (ISO date-time): with `local`, a wall-clock time reached in each user's zone
    (no offset, e.g. "2026-12-24T09:00"); without it, an instant (an offset is required).
    `rate`: entries per second.
    """

    journey: str = Field(min_length=1, max_length=100)
    segment: str = Field(min_length=1, max_length=100)
    at: datetime | None = None
    local: bool = False
    rate: float | None = Field(default=None, gt=0, le=10_000)


class BroadcastOut(BaseModel):
    id: str
    journey: str
    segment: str
    status: BroadcastStatus
    total: int | None
    entered: int
    skipped: int
    local: bool
    at: datetime | None
    local_at: str | None
    rate: float | None
    schedule: str | None
    next_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class SegmentSummary(BaseModel):
    name: str
    expression: str
    description: str | None = None
    source: str


class SegmentList(BaseModel):
    items: list[SegmentSummary]
    next: str | None = None


class SegmentMember(BaseModel):
    uid: str
    user_id: str | None
    """The product's id (absent for an anonymous user)."""


class SegmentOut(SegmentSummary):
    size: int
    sample: list[SegmentMember]
