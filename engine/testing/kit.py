"""Test kit for journey authors: a week of a journey in seconds, on real parts.

    async with JourneyEnv.start(journeys=[AbandonedCart], config=config) as env:
        ann = await env.user("ann", zone="Asia/Tokyo")
        await env.emit(ann, "Cart Updated", {"item_count": 2})
        await env.advance(hours=25)
        [reminder] = await env.sent(ann)           # .at / .local are virtual send times
        print((await env.run(ann, "abandoned_cart")).outcome)

What runs: a Temporal dev server with server-side time skipping (its own, started on a free
port with state in a temp dir, unless you pass `client=`), a worker for the given journeys,
SQLite in a temp dir (unless `database_url=`), recording console providers for every channel,
and the event router, called synchronously so the kit is deterministic.

Virtual time: the kit keeps one clock, `env.now()` = wall clock + `env.offset`, and keeps
every run's clock on it (see engine/timeskip.py for the server's semantics):

* A run is started with `start_delay` = the kit's offset (a client interceptor adds it to
  the router's signal-with-start), then stepped by that much with `fast_forward` while it is
  idle, so its first workflow task runs at the kit's "now", not at the wall clock.
* After each emit the kit waits until every open run is idle (no workflow task, no
  activity). A fast-forward must never be issued while a run is busy: the server then
  overshoots to the run's next timer (observed on Server 1.32.0).
* `advance(d)` fast-forwards every open run by `d` concurrently; each call returns when the
  clocks reached the target and the worker handled every timer due before it (~1 s of wall
  time per timer). Activities (delivery) take "now" from the workflow, so message rows carry
  virtual `created_at`/`sent_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.service import RPCError

from engine.app.journeys import shipped_journeys
from engine.app.router import Router, build_router
from engine.app.worker import build_workers, ensure_sweep, needs_sweep, running
from engine.channels.base import Content
from engine.channels.console import ConsoleProvider
from engine.channels.registry import Providers
from engine.config.nudge_toml import NudgeConfig
from engine.config.settings import Settings
from engine.context import Context
from engine.delivery.templates import TemplateStore
from engine.journey import Journey, Journeys, JourneyState, registry
from engine.store import consent as consent_log
from engine.store import devices as device_registry
from engine.store import due as due_triggers
from engine.store import outbox as event_outbox
from engine.store.migrate import upgrade
from engine.store.models import Event, JourneyRun, Message
from engine.store.session import make_engine
from engine.store.users import apply_profile, ensure_user
from engine.system import sweep
from engine.temporal import timeskip
from engine.temporal.timeskip import TimeSkippingUnavailable
from engine.testing.server import DelayStarts, start_time_skipping_server
from schemas.common import MessageStatus, Platform, RunStatus
from schemas.events import TrackCall
from schemas.triggers import SweepPlanned

__all__ = [
    "JourneyEnv",
    "RunView",
    "SentMessage",
    "TestUser",
    "TimeSkippingUnavailable",
    "start_time_skipping_server",
]

SETTLE_TIMEOUT = timedelta(seconds=30)
"""How long (wall time) `emit` waits for the runs to become idle."""
STEP_TIMEOUT = timedelta(minutes=2)
"""How long (wall time) one `advance` may take: ~1 s per timer it fires, plus activities."""
KIT_SWEEP_EVERY = timedelta(days=3650)
"""The sweep's longest sleep under the kit (see `_kit_config`)."""
DEFAULT_CONSENT = {"push": "subscribed", "sms": "subscribed"}


@dataclass(frozen=True)
class TestUser:
    """A user the kit created: `external_id` is the product's id, `id` Nudge's (`u_...`)."""

    __test__ = False  # not a pytest test class despite the name

    external_id: str
    id: str
    timezone: str


@dataclass(frozen=True)
class SentMessage:
    """One message row, with its virtual time (`at`, UTC) and the user's local time."""

    message_id: str
    journey: str | None
    step: str | None
    template: str | None
    channel: str
    status: str
    reason: str | None
    at: datetime
    local: datetime
    content: Content | None

    @property
    def local_time(self) -> str:
        """`HH:MM` on the user's wall clock."""
        return self.local.strftime("%H:%M")


@dataclass(frozen=True)
class RunView:
    """A run as the kit sees it: the row, Temporal's status, and the `state` query."""

    journey: str
    workflow_id: str
    status: RunStatus
    outcome: str | None
    state: JourneyState | None
    started_at: datetime | None
    ended_at: datetime | None


class JourneyEnv:
    """A time-skipping environment for journeys; create it with `JourneyEnv.start(...)`."""

    def __init__(self, client: Client, context: Context, router: Router, outbox: ConsoleProvider):
        self.client = client
        self.context = context
        self.router = router
        self.outbox = outbox
        """The recording provider behind every channel: `.sent` holds what it delivered."""
        self.offset = timedelta(0)
        """How far the kit's clock runs ahead of the wall clock."""
        self._aligned: set[int] = set()
        self._system: list[str] = []
        """Nudge's own workflows the kit keeps on its clock (the due-trigger sweep)."""

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        *,
        journeys: Sequence[type[Journey[Any]]] | Journeys | None = None,
        config: NudgeConfig | None = None,
        client: Client | None = None,
        database_url: str | None = None,
        start_at: datetime | None = None,
        templates: TemplateStore | None = None,
        quiet: bool = False,
    ) -> AsyncIterator[JourneyEnv]:
        """Start the environment; everything it started is stopped when the block ends.

        `journeys`: classes (default: every shipped journey). `config`: the `nudge.toml`
        model (quiet hours, caps, journey overrides). `client`: a server with time skipping
        (default: a dev server of its own). `start_at`: the virtual instant the kit starts at
        (aware, not in the past; default: now). `quiet`: silence the own server's banner.
        Raises `TimeSkippingUnavailable` when the
        server does not skip time.
        """
        classes: Journeys
        if isinstance(journeys, Mapping):
            classes = dict(journeys)
        elif journeys is not None:
            classes = registry(journeys)
        else:
            classes = shipped_journeys()
        async with contextlib.AsyncExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nudge-kit-")))
            if client is None:
                server = start_time_skipping_server(tmp, quiet=quiet)
                client = await stack.enter_async_context(server)
            await timeskip.ensure_available(client)
            url, _, schema = (database_url or f"sqlite+aiosqlite:///{tmp / 'nudge.db'}").partition(
                "#schema="
            )
            if database_url is None:
                engine = make_engine(url)
                await upgrade(engine)
                await engine.dispose()
            settings = Settings(
                database_url=url,
                database_schema=schema or None,
                task_queue=f"kit-{uuid.uuid4().hex[:10]}",
            )
            context = await Context.open(settings, config=_kit_config(config or NudgeConfig()))
            stack.push_async_callback(context.close)
            outbox = ConsoleProvider(stream=io.StringIO())
            providers = Providers.console(outbox)
            workers = build_workers(
                client, context, providers=providers, journeys=classes, templates=templates
            )
            await stack.enter_async_context(running(workers))
            env: JourneyEnv | None = None
            delaying: Client | None = None

            async def delayed_client() -> Client:
                assert delaying is not None
                return delaying

            router = build_router(context, delayed_client, journeys=classes)
            env = cls(client, context, router, outbox)
            config_ = client.config()
            config_["interceptors"] = [*config_["interceptors"], DelayStarts(lambda: env.offset)]
            delaying = Client(**config_)
            if start_at is not None:
                env.offset = max(timedelta(0), _aware(start_at) - datetime.now(UTC))
                if start_at < datetime.now(UTC) - timedelta(seconds=1):
                    raise ValueError("start_at is in the past: virtual time only moves forward")
            if needs_sweep(cls.__journey__ for cls in classes.values()):
                # Inactivity and date triggers: the sweep runs on the kit's clock too.
                sweep = await ensure_sweep(delaying, task_queue=settings.task_queue)
                stack.push_async_callback(_terminate, client, sweep)
                await env._align(sweep)
                env._system.append(sweep)
            yield env

    # -- the clock -----------------------------------------------------------------------

    def now(self) -> datetime:
        """The kit's virtual now (UTC): the instant the next emitted event is stamped with."""
        return datetime.now(UTC) + self.offset

    async def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        max_wait: timedelta = STEP_TIMEOUT,
    ) -> None:
        """Move virtual time forward; every open run fires and handles its timers on the way.

        Returns when every run's clock reached the target (or the run ended). Raises
        `TimeoutError` after `max_wait` of wall time for one run.
        """
        step = (delta or timedelta(0)) + timedelta(days=days, hours=hours, minutes=minutes)
        if step <= timedelta(0):
            raise ValueError("advance needs a positive duration")
        target = self.now() + step
        await self._settle()
        # Stop at every inactivity or date trigger due on the way, so the run it starts
        # begins at its due instant (plus a second), not at the end of the step.
        while (due_at := await self._next_due()) is not None and self.now() < due_at < target:
            await self._step(due_at - self.now() + timedelta(seconds=1), max_wait, due_at=due_at)
        if target > self.now():
            await self._step(target - self.now(), max_wait)

    async def _step(
        self, step: timedelta, max_wait: timedelta, *, due_at: datetime | None = None
    ) -> None:
        open_ids = [*await self._open_workflow_ids(), *self._system]
        await asyncio.gather(*(self._forward(wid, step, max_wait) for wid in open_ids))
        self.offset += step
        if due_at is not None:
            await self._until_fired(due_at)
        # What fell due on the way (inactivity, dates) is in the outbox now: route it.
        await self.router.route_pending()
        await self._align_new_runs()
        await self._settle()

    async def _until_fired(self, due_at: datetime, timeout: timedelta = SETTLE_TIMEOUT) -> None:
        """Wait until the sweep fired every row due at `due_at` (its timer's event can
        trail the clock by about a second of wall time)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout.total_seconds()
        while (left := await self._next_due()) is not None and left <= due_at:
            if loop.time() > deadline:
                raise TimeoutError(f"the due-trigger sweep did not fire what was due at {due_at}")
            await asyncio.sleep(0.05)

    async def _wake_sweep(self) -> None:
        """Have the sweep look now (it reads changed profiles), and wait until it has."""
        for workflow_id in self._system:
            await self.client.get_workflow_handle(workflow_id).signal(
                sweep.PLANNED_SIGNAL, SweepPlanned(due_at=self.now())
            )
        if self._system:
            await self._settle()

    async def _next_due(self) -> datetime | None:
        if not self._system:
            return None
        async with self.context.sessions() as session:
            return await due_triggers.next_due(session)

    async def advance_to(self, when: datetime) -> None:
        """`advance` to the virtual instant `when` (aware); no-op if it is not ahead."""
        delta = _aware(when) - self.now()
        if delta > timedelta(0):
            await self.advance(delta)

    # -- users and events ----------------------------------------------------------------

    async def user(
        self,
        external_id: str | None = None,
        *,
        zone: str = "UTC",
        locale: str | None = None,
        devices: Sequence[str] = ("ios",),
        phone: str | None = "+12025550123",
        consent: Mapping[str, str] | None = None,
        traits: Mapping[str, Any] | None = None,
    ) -> TestUser:
        """Create a user with a zone, locale, devices (platform names), phone and consent.

        Defaults: one iOS device, a (fictional) phone, marketing consent `subscribed` on push
        and sms, so sends are not suppressed unless a test says so.
        """
        external_id = external_id or f"user-{uuid.uuid4().hex[:8]}"
        async with self.context.sessions() as session:
            row = await ensure_user(session, external_id=external_id)
            profile = {"timezone": zone, "locale": locale, "phone": phone, **(traits or {})}
            apply_profile(row, profile)
            for n, platform in enumerate(devices):
                await device_registry.register(
                    session,
                    user=row,
                    platform=Platform(platform),
                    token=f"kit-{row.id}-{platform}-{n}",
                )
            for channel, state in (DEFAULT_CONSENT if consent is None else consent).items():
                await consent_log.record(
                    session,
                    user_id=row.id,
                    channel=channel,
                    topic=consent_log.MARKETING,
                    state=consent_log.ConsentState(state),
                    source=consent_log.ConsentSource.API,
                    evidence="test kit",
                )
            await session.commit()
        await self._wake_sweep()  # a date on the profile (a birthday) is planned now
        return TestUser(external_id=external_id, id=row.id, timezone=zone)

    async def emit(
        self,
        user: TestUser,
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """Store a track event stamped at `now()`, route it, and wait until the runs handled it.

        `context`: Segment's context object (e.g. `{"location": {"latitude": ...}}`).
        Returns the event's message id.
        """
        at = self.now()
        message_id = f"kit-{uuid.uuid4().hex}"
        call = TrackCall(
            userId=user.external_id,
            event=event,
            properties=dict(properties or {}),
            context=dict(context or {}),
            messageId=message_id,
            timestamp=at,
        )
        async with self.context.sessions() as session:
            await event_outbox.accept(session, [call])
            await session.execute(
                update(Event).where(Event.message_id == message_id).values(received_at=at)
            )
            await session.commit()
        # The router stamps an entry with its trigger's `received_at`: virtual time here.
        await self.router.route_pending()
        await self._align_new_runs()
        await self._settle()
        return message_id

    # -- what happened -------------------------------------------------------------------

    async def messages(self, user: TestUser) -> list[SentMessage]:
        """Every message row of the user (sent, suppressed, failed), in virtual time order."""
        contents = {m.message_id: m.content for m in self.outbox.sent}
        zone = ZoneInfo(user.timezone)
        async with self.context.sessions() as session:
            rows = await session.scalars(select(Message).where(Message.user_id == user.id))
            found = [
                SentMessage(
                    message_id=r.id,
                    journey=r.journey,
                    step=r.step,
                    template=r.template,
                    channel=r.channel,
                    status=r.status,
                    reason=r.reason,
                    at=r.sent_at or r.created_at,
                    local=(r.sent_at or r.created_at).astimezone(zone),
                    content=contents.get(r.id),
                )
                for r in rows
            ]
        return sorted(found, key=lambda m: (m.at, m.message_id))

    async def sent(self, user: TestUser) -> list[SentMessage]:
        """The messages delivered to the user, with their virtual send times."""
        done = (MessageStatus.SENT, MessageStatus.DELIVERED)
        return [m for m in await self.messages(user) if m.status in done]

    async def runs(self, user: TestUser) -> list[RunView]:
        """Every run of the user, oldest first."""
        async with self.context.sessions() as session:
            rows = list(
                await session.scalars(
                    select(JourneyRun).where(JourneyRun.user_id == user.id).order_by(JourneyRun.id)
                )
            )
        return [await self._view(row) for row in rows]

    async def run(self, user: TestUser, journey: str) -> RunView:
        """The user's latest run of `journey`: status, outcome and state. `LookupError` if none."""
        views = [v for v in await self.runs(user) if v.journey == journey]
        if not views:
            raise LookupError(f"{user.external_id} has no run of {journey!r}")
        return views[-1]

    # -- internals -----------------------------------------------------------------------

    async def _view(self, row: JourneyRun) -> RunView:
        handle = self.client.get_workflow_handle(row.workflow_id, run_id=row.run_id)
        desc = await handle.describe()
        state: JourneyState | None = None
        with contextlib.suppress(Exception):  # a query needs the worker; the view still helps
            state = await handle.query("state", result_type=JourneyState)
        return RunView(
            journey=row.journey,
            workflow_id=row.workflow_id,
            status=RunStatus(row.status),
            outcome=row.outcome,
            state=state,
            started_at=desc.execution_time or desc.start_time,
            ended_at=desc.close_time,
        )

    async def _open_rows(self) -> list[JourneyRun]:
        async with self.context.sessions() as session:
            query = select(JourneyRun).where(JourneyRun.status == RunStatus.OPEN)
            return list(await session.scalars(query))

    async def _open_workflow_ids(self) -> list[str]:
        return sorted({row.workflow_id for row in await self._open_rows()})

    async def _align_new_runs(self) -> None:
        """Step each run started since the last call to the kit's clock (its start is delayed)."""
        for row in await self._open_rows():
            if row.id in self._aligned:
                continue
            self._aligned.add(row.id)
            await self._align(row.workflow_id)

    async def _align(self, workflow_id: str) -> None:
        """Step a run that was just started (delayed) to the kit's clock."""
        lag = self.now() - await timeskip.current_time(self.client, workflow_id)
        if lag > timedelta(seconds=1):
            await self._forward(workflow_id, lag, STEP_TIMEOUT)

    async def _forward(self, workflow_id: str, step: timedelta, max_wait: timedelta) -> None:
        try:
            await timeskip.fast_forward(self.client, workflow_id, step, max_wait=max_wait)
        except RPCError:
            desc = await self.client.get_workflow_handle(workflow_id).describe()
            if desc.status == WorkflowExecutionStatus.RUNNING:
                raise  # a run that just ended refuses the step; anything else is real

    async def _settle(self, timeout: timedelta = SETTLE_TIMEOUT) -> None:
        """Wait until no open run has a workflow task or an activity in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout.total_seconds()
        for workflow_id in [*await self._open_workflow_ids(), *self._system]:
            handle = self.client.get_workflow_handle(workflow_id)
            while not await _idle(handle):
                if loop.time() > deadline:
                    raise TimeoutError(f"run {workflow_id} still busy after {timeout}")
                await asyncio.sleep(0.02)


async def _idle(handle: WorkflowHandle[Any, Any]) -> bool:
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return True
    raw = desc.raw_description
    return not raw.HasField("pending_workflow_task") and not raw.pending_activities


def _kit_config(config: NudgeConfig) -> NudgeConfig:
    """The config with the sweep's regular look turned off: under the kit it wakes only
    when something falls due (the router wakes it for every plan), so a virtual week is a
    few timers, not one a minute."""
    triggers = config.triggers.model_copy(
        update={"sweep_every": KIT_SWEEP_EVERY, "profile_settle": timedelta(0)}
    )
    return config.model_copy(update={"triggers": triggers})


async def _terminate(client: Client, workflow_id: str) -> None:
    with contextlib.suppress(RPCError):
        await client.get_workflow_handle(workflow_id).terminate("test kit stopped")


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("use an aware datetime (with a zone)")
    return when.astimezone(UTC)
