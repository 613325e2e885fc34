"""The event router: drains the events table (the outbox) into Temporal.

For each stored event, in order: signal-with-start a run of every journey whose trigger
matches (when re-entry allows), and signal every open run of the user. An event is marked
routed only after every call succeeded; if Temporal is unreachable it stays in the table and
is retried, so nothing accepted is lost. Repeated deliveries are harmless: runs ignore an
event whose `message_id` they have already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from engine import ids, runs
from engine.config import NudgeConfig
from engine.db.models import Event, JourneyRun
from engine.db.session import dialect_name
from engine.db.upsert import insert_ignore
from engine.journey import ALWAYS, EVENT_SIGNAL, Journey, JourneySpec
from engine.journey_types import SA_JOURNEY, SA_USER
from engine.metrics import EVENTS_ROUTED, ROUTING_LAG
from engine.users import now
from schemas.common import RunStatus
from schemas.events import JourneyEvent
from schemas.journeys import JourneyEntry

log = logging.getLogger(__name__)

RPC_TIMEOUT = timedelta(seconds=5)
MAX_BACKOFF = 5.0
MAX_KEY_LENGTH = 200  # a journey key goes into the workflow id (Temporal allows 1,000)


def _unreachable(exc: Exception) -> bool:
    """Temporal cannot be reached at all: retry everything later."""
    if isinstance(exc, RPCError):
        return exc.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.CANCELLED,
        )
    return isinstance(exc, RuntimeError | OSError | TimeoutError)


def _invalid(exc: Exception) -> bool:
    """The event itself can never be routed (too big, an id too long, bad data)."""
    if isinstance(exc, RPCError):
        return exc.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.OUT_OF_RANGE)
    return isinstance(exc, ValueError | TypeError | DataError)


def reentry_allows(spec: JourneySpec, last: JourneyRun | None, at: datetime) -> bool:
    """Whether a trigger at `at` may start a new run, given the user's last run."""
    if last is None:
        return True
    if last.status == RunStatus.OPEN:
        return False
    if spec.reentry is None:
        return False
    if spec.reentry == ALWAYS:
        return True
    assert isinstance(spec.reentry, timedelta)
    return at - last.started_at >= spec.reentry


class Router:
    """Routes unrouted events; `run` loops until cancelled, `wake` shortens the wait."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: Callable[[], Awaitable[Client]],
        journeys: Mapping[str, type[Journey]],
        config: NudgeConfig,
        task_queue: str,
        search_attributes: bool = True,
        poll_interval: float = 0.5,
    ) -> None:
        self._sessions = sessionmaker
        self._client = client
        self._specs = [cls.__journey__ for cls in journeys.values()]
        self._config = config
        self._task_queue = task_queue
        self._search_attributes = search_attributes
        self._poll = poll_interval
        self._wake = asyncio.Event()
        # Events that failed for a passing reason, and when to try them again (loop time).
        self._later: dict[int, float] = {}

    def wake(self) -> None:
        """Look for new events now (called after the API stored some)."""
        self._wake.set()

    async def run(self) -> None:
        """Route forever, backing off while Temporal is unreachable."""
        backoff = self._poll
        while True:
            try:
                routed = await self.route_pending()
                backoff = self._poll
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                level = (
                    logging.WARNING
                    if isinstance(exc, RPCError | RuntimeError | OSError)
                    else logging.ERROR
                )
                log.log(
                    level,
                    "routing paused: %s; retrying in %.1fs",
                    exc,
                    backoff,
                    exc_info=level == logging.ERROR,
                )
                routed = 0
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if routed == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    async def route_pending(self, *, limit: int = 100) -> int:
        """Route up to `limit` events, oldest first; returns how many were routed.

        Each event is routed in its own transaction holding a lock on the event row
        (Postgres: `FOR UPDATE SKIP LOCKED`, so several routers share the work). An event is
        only taken once every older event of the same user is routed, so a user's events
        reach their runs in order whichever router takes them. An event that can never be
        routed (Temporal refuses it as invalid) is set aside with the reason; one that fails
        for a passing reason is retried later without holding up other users' events.
        """
        client = await self._client()
        count = 0
        loop = asyncio.get_running_loop()
        self._later = {k: t for k, t in self._later.items() if t > loop.time()}
        while count < limit:
            async with self._sessions() as session, session.begin():
                event = await self._next(session)
                if event is None:
                    return count
                try:
                    async with session.begin_nested():
                        await self._route(session, client, event)
                except Exception as exc:
                    if _unreachable(exc):
                        raise  # Temporal is down: back off as a whole
                    if not _invalid(exc):
                        log.warning("event %s not routed yet: %s", event.id, type(exc).__name__)
                        self._later[event.id] = loop.time() + MAX_BACKOFF
                        event.route_attempts += 1
                        continue
                    event.route_error = f"{type(exc).__name__}: {exc}"[:200]
                    log.error("event %s set aside: %s", event.id, event.route_error)
                event.route_attempts += 1
                event.routed_at = now()
            EVENTS_ROUTED.inc()
            ROUTING_LAG.observe((event.routed_at - event.received_at).total_seconds())
            count += 1
        return count

    async def _next(self, session: AsyncSession) -> Event | None:
        older = aliased(Event)
        earlier_unrouted = (
            select(older.id)
            .where(older.user_id == Event.user_id, older.id < Event.id, older.routed_at.is_(None))
            .exists()
        )
        query = select(Event).where(Event.routed_at.is_(None), ~earlier_unrouted)
        if self._later:
            query = query.where(Event.id.not_in(list(self._later)))
        query = query.order_by(Event.id).limit(1)
        if dialect_name(session) == "postgresql":
            query = query.with_for_update(skip_locked=True, of=Event)
        return (await session.scalars(query)).first()

    async def _route(self, session: AsyncSession, client: Client, event: Event) -> None:
        if event.type != "track":
            return  # identify calls change the profile; journeys see track events only
        signal = JourneyEvent(
            message_id=event.message_id,
            name=event.name,
            properties=dict(event.properties or {}),
            timestamp=event.timestamp,
        )
        open_runs = await runs.open_runs(session, user_id=event.user_id)
        started: set[str] = set()
        for spec in self._specs:
            if spec.goal is not None and spec.goal.event == event.name:
                key_value = (event.properties or {}).get(spec.key) if spec.key else None
                await runs.convert_closed(
                    session,
                    journey=spec.name,
                    user_id=event.user_id,
                    key=None if key_value is None else str(key_value),
                    within=spec.goal.within,
                    at=event.received_at,
                )
            if spec.trigger != event.name:
                continue
            key_value = (event.properties or {}).get(spec.key) if spec.key else None
            if spec.key and key_value is None:
                log.info("event %s lacks key %r for %s", event.id, spec.key, spec.name)
                continue
            key = None if key_value is None else str(key_value)
            if key is not None and len(key) > MAX_KEY_LENGTH:
                raise ValueError(f"{spec.key} is longer than {MAX_KEY_LENGTH} characters")
            workflow_id = ids.journey_workflow_id(spec.name, event.user_id, key)
            if any(run.workflow_id == workflow_id for run in open_runs):
                continue  # delivered below, as an ordinary event
            last = await runs.last_entry(session, journey=spec.name, user_id=event.user_id, key=key)
            if last is not None and last.entry_event_id == event.id:
                pass  # a retry of this very entry: start again (idempotent on Temporal's side)
            elif not reentry_allows(spec, last, event.received_at):
                continue
            await insert_ignore(
                session,
                JourneyRun,
                {
                    "journey": spec.name,
                    "user_id": event.user_id,
                    "key": key,
                    "workflow_id": workflow_id,
                    "entry_event_id": event.id,
                    "status": RunStatus.OPEN.value,
                    # Entered when its trigger arrived (also what re-entry cool-downs compare).
                    "started_at": event.received_at,
                },
                conflict=["journey", "entry_event_id"],
            )
            await self._signal_with_start(client, spec, workflow_id, event.user_id, key, signal)
            started.add(workflow_id)
        for run in open_runs:
            if run.workflow_id in started:
                continue
            try:
                await client.get_workflow_handle(run.workflow_id).signal(
                    EVENT_SIGNAL, signal, rpc_timeout=RPC_TIMEOUT
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                # The run ended without closing its row (e.g. terminated by an operator).
                await runs.mark_finished(
                    session,
                    workflow_id=run.workflow_id,
                    run_id=None,
                    status=RunStatus.TERMINATED,
                    outcome="not_found",
                )

    async def _signal_with_start(
        self,
        client: Client,
        spec: JourneySpec,
        workflow_id: str,
        user_id: str,
        key: str | None,
        signal: JourneyEvent,
    ) -> None:
        entry = JourneyEntry(
            journey=spec.name,
            user_id=user_id,
            key=key,
            event=signal,
            settings=self._config.journey_overrides(spec.name),
            search_attributes=self._search_attributes,
        )
        attributes = (
            TypedSearchAttributes(
                [SearchAttributePair(SA_JOURNEY, spec.name), SearchAttributePair(SA_USER, user_id)]
            )
            if self._search_attributes
            else None
        )
        try:
            await client.start_workflow(
                spec.name,
                entry,
                id=workflow_id,
                task_queue=self._task_queue,
                start_signal=EVENT_SIGNAL,
                start_signal_args=[signal],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                # Once per user ever: Temporal too refuses a second run (while it remembers).
                id_reuse_policy=(
                    WorkflowIDReusePolicy.REJECT_DUPLICATE
                    if spec.reentry is None
                    else WorkflowIDReusePolicy.ALLOW_DUPLICATE
                ),
                search_attributes=attributes,
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            log.info("%s already ran for this user; not entered again", spec.name)
