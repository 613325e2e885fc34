"""The event router: drains the events table (the outbox) into Temporal, in batches.

Per batch, in one transaction: claim the oldest unrouted events (`engine.store.outbox.claim`:
each user's events as a prefix of that user's backlog, so order holds across routers), read
the batch's open runs and last entries at once, then per user, in order: signal-with-start a
run of each journey the event triggers (when re-entry allows) and signal each open run that
listens to the event (`JourneySpec.interests`). Users are routed concurrently. Entries and
`routed_at` are written in bulk before the commit. An event is marked routed only once
every call for it succeeded; if Temporal is unreachable the whole batch stays and is retried,
so nothing accepted is lost. Repeats are harmless: runs ignore an event whose `message_id`
they have already seen, and an entry is keyed by (journey, event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from engine import ids
from engine.clock import now
from engine.config.nudge_toml import NudgeConfig
from engine.journey import EVENT_SIGNAL, Journeys, JourneySpec
from engine.observability.metrics import (
    EVENTS_ROUTED,
    JOURNEY_CONVERSIONS,
    JOURNEY_ENTRIES,
    ROUTER_BATCH,
    ROUTER_CLAIMED,
    ROUTING_LAG,
    journey_label,
)
from engine.store import driver, outbox, runs
from engine.store.models import Event, JourneyRun
from engine.store.wakeups import EventListener
from engine.system import sweep
from engine.temporal.entry import enter, reentry_allows
from schemas.common import RunStatus
from schemas.events import ROUTED_TYPES, JourneyEvent
from schemas.triggers import SweepPlanned
from triggers.planner import Planner

log = logging.getLogger(__name__)

RPC_TIMEOUT = timedelta(seconds=5)
MAX_BACKOFF = 5.0
MAX_KEY_LENGTH = 200  # a journey key goes into the workflow id (Temporal allows 1,000)
BATCH = 200
CONCURRENCY = 32
"""Users routed at once: Temporal calls run concurrently across users, in order within one."""


def _unreachable(exc: BaseException) -> bool:
    """Temporal cannot be reached at all: retry everything later."""
    if isinstance(exc, RPCError):
        return exc.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.CANCELLED,
        )
    return isinstance(exc, RuntimeError | OSError | TimeoutError)


def _invalid(exc: BaseException) -> bool:
    """The event itself can never be routed (too big, an id too long, bad data)."""
    if isinstance(exc, RPCError):
        return exc.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.OUT_OF_RANGE)
    return isinstance(exc, ValueError | TypeError | DataError)


@dataclass
class _UserRouting:
    """What routing one user's events in this batch did."""

    routed: list[int] = field(default_factory=list)
    set_aside: dict[int, str] = field(default_factory=dict)
    retry: int | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failure: BaseException | None = None


class Router:
    """Routes unrouted events; `run` loops until cancelled, `wake` shortens the wait."""

    @property
    def journey_names(self) -> frozenset[str]:
        """The journeys this router starts runs of."""
        return frozenset(self._specs)

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: Callable[[], Awaitable[Client]],
        journeys: Journeys,
        config: NudgeConfig,
        task_queue: str,
        search_attributes: bool = True,
        poll_interval: float = 0.5,
        version: str = "dev",
        batch: int = BATCH,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._sessions = sessionmaker
        self._client = client
        self._specs = {cls.__journey__.name: cls.__journey__ for cls in journeys.values()}
        self._planner = Planner(specs=self._specs.values(), config=config)
        self._config = config
        self._task_queue = task_queue
        self._search_attributes = search_attributes
        self._poll = poll_interval
        self._version = version
        self._batch = batch
        ROUTER_BATCH.set(batch)
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        bind = sessionmaker.kw.get("bind")
        self.listener = EventListener(bind, self.wake) if isinstance(bind, AsyncEngine) else None
        """Wakes this router when another process stores events (Postgres)."""
        # Events that failed for a passing reason, and when to try them again (loop time).
        self._later: dict[int, float] = {}

    @property
    def specs(self) -> dict[str, JourneySpec]:
        """The journeys this router enters users into, by name."""
        return dict(self._specs)

    def wake(self) -> None:
        """Look for new events now (called after the API stored some)."""
        self._wake.set()

    async def run(self) -> None:
        """Route forever, backing off while Temporal is unreachable; woken by `wake` and by
        events stored anywhere (`engine.store.wakeups`), polling every `poll_interval`."""
        listening = asyncio.create_task(self.listener.run()) if self.listener else None
        try:
            await self._route_forever()
        finally:
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening

    async def _route_forever(self) -> None:
        backoff = self._poll
        while True:
            try:
                routed = await self.route_pending()
                backoff = self._poll
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                level = logging.WARNING if _unreachable(exc) else logging.ERROR
                log.log(
                    level,
                    "routing paused: %s; retrying in %.1fs",
                    exc,
                    backoff,
                    exc_info=level == logging.ERROR,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if routed == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    async def route_pending(self, *, limit: int | None = None) -> int:
        """Route batches until none is left or `limit` events were routed; returns how many.

        An event that can never be routed (Temporal refuses it as invalid) is set aside with
        the reason; one that fails for a passing reason is retried later, holding up only the
        later events of its own user.
        """
        client = await self._client()
        total = 0
        while limit is None or total < limit:
            routed, claimed, synthesized = await self._route_batch(client)
            ROUTER_CLAIMED.set(claimed)
            total += routed
            if claimed < self._batch and not synthesized:
                break
        return total

    async def _route_batch(self, client: Client) -> tuple[int, int, int]:
        """One batch in one transaction; returns (events routed, events claimed, events
        synthesized for later batches: geofence crossings)."""
        loop = asyncio.get_running_loop()
        self._later = {k: t for k, t in self._later.items() if t > loop.time()}
        async with self._sessions() as session, driver.transaction(session):
            events = await outbox.claim(session, limit=self._batch, skip=self._later)
            if not events:
                return 0, 0, 0
            by_user: dict[str, list[Event]] = {}
            for event in events:
                by_user.setdefault(event.user_id, []).append(event)
            open_runs = await runs.open_runs_of(session, user_ids=by_user)
            triggered = {
                s.name for s in self._specs.values() for e in events if e.name == s.trigger
            }
            # Inactivity counts, date plans and geofence crossings, in this transaction.
            planned = await self._planner.plan(session, events, at=now())
            last = await runs.last_entries(session, user_ids=by_user, journeys=triggered)
            await self._record_late_goals(session, events)
            done = await asyncio.gather(
                *(
                    self._route_user(client, user, queue, open_runs.get(user, []), last)
                    for user, queue in by_user.items()
                )
            )
            failures = [d.failure for d in done if d.failure is not None]
            if (
                failures
                and all(_unreachable(f) for f in failures)
                and not any(d.routed for d in done)
            ):
                raise failures[0]  # Temporal is down: roll the batch back, back off as a whole
            stamp = now()
            entries = [e for d in done for e in d.entries]
            await runs.add_entries(session, entries)
            await runs.terminated(
                session, workflow_ids=[w for d in done for w in d.gone], outcome="not_found"
            )
            routed = [event_id for d in done for event_id in d.routed]
            await outbox.mark_routed(session, ids=routed, at=stamp)
            for d in done:
                for event_id, reason in d.set_aside.items():
                    log.error("event %s set aside: %s", event_id, reason)
                    await outbox.mark_routed(session, ids=[event_id], at=stamp, error=reason)
            retry = [d.retry for d in done if d.retry is not None]
            for event_id in retry:
                self._later[event_id] = loop.time() + MAX_BACKOFF
            await outbox.note_attempt(session, ids=retry)
        for entry in entries:
            JOURNEY_ENTRIES.labels(journey_label(entry["journey"])).inc()
        await self._wake_sweep(client, planned.wake_at)
        lagging = {event.id: event.received_at for event in events}
        for event_id in routed:
            EVENTS_ROUTED.inc()
            ROUTING_LAG.observe((stamp - lagging[event_id]).total_seconds())
        return (
            len(routed) + sum(len(d.set_aside) for d in done),
            len(events),
            planned.synthesized,
        )

    async def _route_user(
        self,
        client: Client,
        user_id: str,
        events: list[Event],
        open_runs: list[JourneyRun],
        last: dict[tuple[str, str, str | None], JourneyRun],
    ) -> _UserRouting:
        """Route one user's events in order; stop at the first that fails for now."""
        done = _UserRouting()
        running = {run.workflow_id: run.journey for run in open_runs}
        async with self._limit:
            for event in events:
                try:
                    await self._route_event(client, event, running, last, done)
                except Exception as exc:
                    if _invalid(exc):
                        done.set_aside[event.id] = f"{type(exc).__name__}: {exc}"[:200]
                        continue
                    if not _unreachable(exc):
                        log.warning("event %s not routed yet: %s", event.id, type(exc).__name__)
                    done.retry, done.failure = event.id, exc
                    break
                done.routed.append(event.id)
        return done

    async def _route_event(
        self,
        client: Client,
        event: Event,
        running: dict[str, str],
        last: dict[tuple[str, str, str | None], JourneyRun],
        done: _UserRouting,
    ) -> None:
        if event.type not in ROUTED_TYPES:
            return  # identify, group and alias change profiles; journeys see the others
        signal = JourneyEvent(
            message_id=event.message_id,
            name=event.name,
            properties=dict(event.properties or {}),
            timestamp=event.timestamp,
        )
        started: set[str] = set()
        for spec in self._specs.values():
            if not spec.started_by(event.name, signal.properties):
                continue
            key_value = (event.properties or {}).get(spec.key) if spec.key else None
            if spec.key and key_value is None:
                log.info("event %s lacks key %r for %s", event.id, spec.key, spec.name)
                continue
            key = None if key_value is None else str(key_value)
            if key is not None and len(key) > MAX_KEY_LENGTH:
                raise ValueError(f"{spec.key} is longer than {MAX_KEY_LENGTH} characters")
            workflow_id = ids.journey_workflow_id(spec.name, event.user_id, key)
            if workflow_id in running:
                continue  # delivered below, as an ordinary event
            previous = last.get((spec.name, event.user_id, key))
            retried = previous is not None and previous.entry_event_id == event.id
            if not retried and not reentry_allows(spec, previous, event.received_at):
                continue
            run_id = await self._signal_with_start(client, spec, workflow_id, event, key, signal)
            if run_id is None:
                continue
            entry: dict[str, Any] = {
                "journey": spec.name,
                "user_id": event.user_id,
                "key": key,
                "workflow_id": workflow_id,
                "run_id": run_id,
                "entry_event_id": event.id,
                "version": self._version,
                # Entered when its trigger arrived (also what re-entry cool-downs compare).
                "started_at": event.received_at,
            }
            done.entries.append(entry)
            # Later events of this batch see the new run, and its entry for re-entry.
            last[(spec.name, event.user_id, key)] = JourneyRun(**entry, id=0, status=RunStatus.OPEN)
            running[workflow_id] = spec.name
            started.add(workflow_id)
        for workflow_id, journey in list(running.items()):
            listener = self._specs.get(journey)
            if workflow_id in started or (
                listener is not None and event.name not in listener.interests
            ):
                continue
            try:
                await client.get_workflow_handle(workflow_id).signal(
                    EVENT_SIGNAL, signal, rpc_timeout=RPC_TIMEOUT
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                # The run ended without closing its row (e.g. terminated by an operator).
                done.gone.append(workflow_id)
                del running[workflow_id]

    async def _wake_sweep(self, client: Client, due_at: datetime | None) -> None:
        """Tell the sweep about an entry planned sooner than its next regular look (it
        sleeps up to `[triggers] sweep_every`). Best effort: the plan is committed, and the
        sweep's next look finds it anyway."""
        if due_at is None:
            return
        try:
            await client.get_workflow_handle(sweep.workflow_id(self._task_queue)).signal(
                sweep.PLANNED_SIGNAL, SweepPlanned(due_at=due_at), rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                log.warning("could not wake the due-trigger sweep: %s", exc.status.name)

    async def _record_late_goals(self, session: AsyncSession, events: Iterable[Event]) -> None:
        """Goals that arrive after their run ended still count within the goal window."""
        goals = []
        for event in events:
            for spec in self._specs.values():
                if spec.goal is None or spec.goal.event != event.name:
                    continue
                key_value = (event.properties or {}).get(spec.key) if spec.key else None
                goals.append(
                    (
                        spec.name,
                        event.user_id,
                        None if key_value is None else str(key_value),
                        spec.goal.within,
                        event.received_at,
                    )
                )
        if goals:
            for journey in await runs.convert_closed(session, goals=goals):
                JOURNEY_CONVERSIONS.labels(journey_label(journey)).inc()

    async def _signal_with_start(
        self,
        client: Client,
        spec: JourneySpec,
        workflow_id: str,
        event: Event,
        key: str | None,
        signal: JourneyEvent,
    ) -> str | None:
        """Enter the user (or signal the run that is already there); the run id, or None
        when Temporal refuses a second run of a once-only journey."""
        run_id = await enter(
            client,
            spec=spec,
            workflow_id=workflow_id,
            user_id=event.user_id,
            key=key,
            event=signal,
            settings=self._config.journey_overrides(spec.name),
            task_queue=self._task_queue,
            search_attributes=self._search_attributes,
            rpc_timeout=RPC_TIMEOUT,
        )
        if run_id is None:
            log.info("%s already ran for this user; not entered again", spec.name)
        return run_id
