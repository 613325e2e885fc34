"""`nudge simulate`: run one journey for one user over a script, in virtual time.

A script is YAML or TOML. Every field but `steps` is optional:

    journey: abandoned_cart          # the CLI argument wins
    start: "20:30"                   # next 20:30 in the user's zone; or "2027-01-15T20:30"
                                     # (local), or with an offset ("...+09:00"); default: now
    until: "+2d"                     # run on to here after the last step (default: +1d)
    user: {zone: Asia/Tokyo, locale: ja, phone: "+81...", devices: [ios],
           consent: {push: subscribed, sms: subscribed}, traits: {first_name: Kei}}
    steps:
      - at: "+0h"
        emit: Cart Updated
        props: {item_count: 2}
      - at: "+12h"
        expect: {sent: cart_reminder, channel: push, local_time: "08:00"}
      - at: "+12h"
        expect: [{deferred: cart_reminder, reason: quiet_hours}, {outcome: reminded}]

`at` is an offset from `start` ("+0h", "+30h", "+1d2h"). At each step the clock is advanced
to `at`, then the event (if any) is emitted, then the expectations are checked against what
happened so far. An expectation names one kind: `sent`, `suppressed`, `deferred` or
`not_sent` (a template name), `outcome` or `status` (of the journey's latest run); the
filters `channel`, `local_time` ("HH:MM" in the user's zone), `reason`, `at` (offset) narrow
it. In TOML, write the steps as `[[steps]]` tables.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.converter import decode_typed_search_attributes

from engine.durations import parse_duration
from engine.journey import SA_STEP
from engine.localtime import next_local_time
from engine.store.models import Event, JourneyRun
from engine.testing.kit import JourneyEnv, SentMessage, TestUser
from schemas.journeys import DeliverOutcome, DeliverRequest, JourneyResult

KINDS = ("sent", "suppressed", "deferred", "not_sent", "outcome", "status")


class ScriptError(ValueError):
    """A script that cannot be used; the message names the file and the problem."""


def _offset(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value.strip().removeprefix("+"))
    return parse_duration(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Expect(_Strict):
    """One expectation; exactly one of `KINDS` is set."""

    sent: str | None = None
    suppressed: str | None = None
    deferred: str | None = None
    not_sent: str | None = None
    outcome: str | None = None
    status: str | None = None
    channel: str | None = None
    local_time: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    reason: str | None = None
    at: timedelta | None = None

    _at = field_validator("at", mode="before")(classmethod(lambda cls, v: _offset(v)))

    @model_validator(mode="after")
    def _one_kind(self) -> Expect:
        kinds = [k for k in KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"an expect names exactly one of {', '.join(KINDS)}")
        return self

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.model_dump(exclude_none=True).items())


class Step(_Strict):
    at: timedelta
    emit: str | None = None
    props: dict[str, Any] = Field(default_factory=dict)
    expect: list[Expect] = Field(default_factory=list)

    _at = field_validator("at", mode="before")(classmethod(lambda cls, v: _offset(v)))

    @field_validator("expect", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class UserSpec(_Strict):
    zone: str | None = None
    locale: str | None = None
    phone: str | None = None
    devices: list[str] | None = None
    consent: dict[str, str] | None = None
    traits: dict[str, Any] = Field(default_factory=dict)


class Script(_Strict):
    journey: str | None = None
    start: str | None = None
    until: timedelta | None = None
    user: UserSpec = Field(default_factory=UserSpec)
    steps: list[Step] = Field(min_length=1)

    _until = field_validator("until", mode="before")(
        classmethod(lambda cls, v: None if v is None else _offset(v))
    )


def load_script(path: Path) -> Script:
    """Read a YAML (a list of steps, or a mapping with `steps`) or TOML script."""
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ScriptError(f"{path}: {exc}") from exc
    if isinstance(data, list):
        data = {"steps": data}
    try:
        return Script.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
        raise ScriptError("\n".join(problems)) from exc


def resolve_start(text: str | None, zone: str, *, now: datetime) -> datetime | None:
    """The virtual start: "HH:MM" = next such local time after `now`; an ISO date-time
    without offset is local to `zone`. None = now. Raises `ScriptError` for the past."""
    if text is None:
        return None
    tz = ZoneInfo(zone)
    if re.fullmatch(r"\d{1,2}:\d{2}", text):
        return next_local_time(now, time.fromisoformat(text.zfill(5)), tz)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ScriptError(f"start {text!r}: write HH:MM or an ISO date-time") from exc
    when = when if when.tzinfo else when.replace(tzinfo=tz)
    if when < now:
        raise ScriptError(f"start {text!r} is in the past; virtual time only moves forward")
    return when.astimezone(UTC)


@dataclass(frozen=True)
class Row:
    """One line of the timeline (virtual UTC time)."""

    at: datetime
    kind: str  # event | entry | wait | deferred | sent | suppressed | failed | exit
    what: str
    detail: str = ""
    template: str | None = None
    channel: str | None = None
    reason: str | None = None


@dataclass
class Check:
    step_at: timedelta
    expect: Expect
    ok: bool
    found: str


@dataclass
class Outcome:
    """What a simulation produced: the timeline and the checked expectations."""

    start: datetime
    zone: str
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


async def timeline(env: JourneyEnv, user: TestUser) -> list[Row]:
    """Events, entries, waits, deferrals, sends, suppressions and exits, in virtual order."""
    rows: list[Row] = []
    zone = ZoneInfo(user.timezone)
    async with env.context.sessions() as session:
        for event in await session.scalars(select(Event).where(Event.user_id == user.id)):
            props = json.dumps(event.properties or {})
            rows.append(Row(event.timestamp, "event", event.name, props))
        runs = list(await session.scalars(select(JourneyRun).where(JourneyRun.user_id == user.id)))
    for run in runs:
        rows += await _history_rows(env.client, run, zone)
    for message in await env.messages(user):
        kind = {"sent": "sent", "delivered": "sent", "suppressed": "suppressed"}.get(
            message.status, "failed" if message.status == "failed" else "sent"
        )
        rows.append(
            Row(
                message.at,
                kind,
                f"{message.template} ({message.channel})",
                message.reason or "",
                message.template,
                message.channel,
                message.reason,
            )
        )
    order = {
        "event": 0,
        "entry": 1,
        "deferred": 2,
        "sent": 3,
        "suppressed": 3,
        "failed": 3,
        "wait": 4,
        "exit": 5,
    }
    rows.sort(key=lambda r: (r.at, order[r.kind]))
    return rows


async def _history_rows(client: Client, run: JourneyRun, zone: ZoneInfo) -> list[Row]:
    handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    history = await handle.fetch_history()
    rows: list[Row] = []
    step = ""
    requests: dict[int, DeliverRequest] = {}
    entered = False

    def local(at: datetime) -> str:
        return at.astimezone(zone).strftime("%a %H:%M local")

    for event in history.events:
        at = _time(event)
        if event.HasField("workflow_task_started_event_attributes") and not entered:
            entered = True
            rows.append(Row(at, "entry", run.journey, run.workflow_id))
        elif event.HasField("upsert_workflow_search_attributes_event_attributes"):
            attrs = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            step = decode_typed_search_attributes(attrs).get(SA_STEP) or step
        elif event.HasField("timer_started_event_attributes") and not step.startswith("deferred:"):
            until = at + event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            what = {"sleep": "sleep"}.get(step, step.replace(":", " ", 1) or "timer")
            what = what.replace("wait ", "wait for ").replace("sleep_until ", "sleep until ")
            rows.append(Row(at, "wait", what, f"until {local(until)}"))
        elif event.HasField("activity_task_scheduled_event_attributes"):
            attrs_s = event.activity_task_scheduled_event_attributes
            if attrs_s.activity_type.name == "nudge.deliver":
                [request] = await client.data_converter.decode(
                    list(attrs_s.input.payloads), [DeliverRequest]
                )
                requests[event.event_id] = request
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            request = requests.get(done.scheduled_event_id)
            if request is None:
                continue
            [result] = await client.data_converter.decode(
                list(done.result.payloads), [DeliverOutcome]
            )
            if result.defer_until is not None:
                rows.append(
                    Row(
                        at,
                        "deferred",
                        f"{request.template} ({request.channel})",
                        f"{result.defer_reason} until {local(result.defer_until)}",
                        request.template,
                        request.channel,
                        result.defer_reason,
                    )
                )
        elif event.HasField("workflow_execution_completed_event_attributes"):
            payloads = event.workflow_execution_completed_event_attributes.result.payloads
            [final] = await client.data_converter.decode(list(payloads), [JourneyResult])
            rows.append(Row(at, "exit", run.journey, f"{final.status} {final.outcome}"))
    return rows


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime().replace(tzinfo=UTC)


async def check(
    env: JourneyEnv, user: TestUser, journey: str, expect: Expect, *, start: datetime
) -> tuple[bool, str]:
    """Whether `expect` holds now; with what was found (for the report)."""
    zone = ZoneInfo(user.timezone)
    if expect.outcome is not None or expect.status is not None:
        try:
            run = await env.run(user, journey)
        except LookupError:
            return False, "no run"
        got = run.outcome if expect.outcome is not None else run.status.value
        return got == (expect.outcome or expect.status), f"{run.status.value} {run.outcome or ''}"
    if expect.deferred is not None:
        rows = [r for r in await timeline(env, user) if r.kind == "deferred"]
        candidates = [(r.template, r.channel, r.reason, r.at) for r in rows]
        template = expect.deferred
    else:
        messages: list[SentMessage] = await env.messages(user)
        wanted = "suppressed" if expect.suppressed is not None else "sent"
        statuses = {"sent": ("sent", "delivered"), "suppressed": ("suppressed",)}[wanted]
        candidates = [
            (m.template, m.channel, m.reason, m.at) for m in messages if m.status in statuses
        ]
        template = expect.sent or expect.suppressed or expect.not_sent or ""

    def matches(c: tuple[str | None, str | None, str | None, datetime]) -> bool:
        name, channel, reason, at = c
        local = at.astimezone(zone).strftime("%H:%M")
        return (
            name == template
            and (expect.channel is None or channel == expect.channel)
            and (expect.reason is None or reason == expect.reason)
            and (expect.local_time is None or local == expect.local_time)
            and (expect.at is None or abs(at - (start + expect.at)) < timedelta(minutes=1))
        )

    hits = [c for c in candidates if matches(c)]
    seen = (
        "; ".join(
            f"{n} {ch or ''} {r or ''} {a.astimezone(zone):%H:%M}".strip()
            for n, ch, r, a in candidates
        )
        or "nothing"
    )
    return (not hits if expect.not_sent is not None else bool(hits)), seen


async def simulate(
    env: JourneyEnv, user: TestUser, journey: str, script: Script, *, start: datetime
) -> Outcome:
    """Play `script` for `user` in `env` (which starts at `start`); return what happened."""
    outcome = Outcome(start=start, zone=user.timezone)
    last = timedelta(0)
    for step in sorted(script.steps, key=lambda s: s.at):
        await env.advance_to(start + step.at)
        if step.emit:
            await env.emit(user, step.emit, step.props)
        for expect in step.expect:
            ok, found = await check(env, user, journey, expect, start=start)
            outcome.checks.append(Check(step.at, expect, ok, found))
        last = step.at
    await env.advance_to(start + (script.until or last + timedelta(days=1)))
    outcome.rows = await timeline(env, user)
    return outcome
