"""The broadcast workflow's activities: plan the audience, enter one page of members, record
progress. Entering is idempotent per member (see `engine.store.broadcasts`): a page retried
after a worker died mid-way enters only those it had not, checking in Temporal (the run's
memo) for members whose entry the dead attempt made but could not record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from engine import ids
from engine.channels.ratelimit import TokenBucket
from engine.config.nudge_toml import NudgeConfig
from engine.journey import JourneySpec
from engine.segments import Segments
from engine.store import broadcasts, runs, segments
from engine.store.segments import Member
from engine.temporal.entry import ENTRY_MEMO, enter, entered_by, reentry_allows
from schemas.broadcasts import (
    BROADCAST_EVENT,
    BroadcastBegin,
    BroadcastMark,
    BroadcastPage,
    BroadcastPlan,
    BroadcastStatus,
    PageDone,
)
from schemas.events import JourneyEvent


def _retried() -> bool:
    return activity.info().attempt > 1


CONCURRENCY = 16
"""Entries in flight at once within a page (Temporal calls; the rate limit still applies)."""


class BroadcastActivities:
    """Activities of `nudge.broadcast`; `client` starts the journeys' runs."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        config: NudgeConfig,
        client: Client,
        task_queue: str,
        journeys: dict[str, JourneySpec],
        segments: Segments,
        version: str = "dev",
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._client = client
        self._task_queue = task_queue
        self._specs = journeys
        self._segments = segments
        self._version = version
        self._buckets: dict[str, TokenBucket] = {}

    def _spec(self, journey: str) -> JourneySpec:
        spec = self._specs.get(journey)
        if spec is None:
            raise ApplicationError(
                f"no journey {journey!r}", type="UnknownJourney", non_retryable=True
            )
        return spec

    def _tree(self, segment: str) -> Any:
        if segment not in self._segments:
            raise ApplicationError(
                f"no segment {segment!r}", type="UnknownSegment", non_retryable=True
            )
        return self._segments.tree(segment)

    @activity.defn(name="nudge.broadcast_begin")
    async def begin(self, begin: BroadcastBegin) -> BroadcastPlan:
        """Record the broadcast (once) and count its audience per zone."""
        request = begin.request
        self._spec(request.journey)
        tree = self._tree(request.segment)
        local_at = None
        if request.local_time is not None:
            local_at = request.local_time.strftime("%H:%M")
            if request.local_date is not None:
                local_at = f"{request.local_date.isoformat()}T{local_at}"
        async with self._sessions() as db, db.begin():
            await broadcasts.create(
                db,
                broadcast_id=begin.broadcast_id,
                journey=request.journey,
                segment=request.segment,
                status=BroadcastStatus.RUNNING,
                local=request.local_time is not None,
                at=request.at,
                local_at=local_at,
                rate=request.rate,
                schedule=request.schedule,
            )
            zones = await segments.zones(db, tree=tree, at=begin.at)
            total = sum(zones.values())
            await broadcasts.mark(
                db, broadcast_id=begin.broadcast_id, status=BroadcastStatus.RUNNING, total=total
            )
        return BroadcastPlan(total=total, zones={zone or "": n for zone, n in zones.items()})

    @activity.defn(name="nudge.broadcast_mark")
    async def mark(self, mark: BroadcastMark) -> None:
        async with self._sessions() as db, db.begin():
            await broadcasts.mark(
                db, broadcast_id=mark.broadcast_id, status=mark.status, next_at=mark.next_at
            )

    @activity.defn(name="nudge.broadcast_page")
    async def pages(self, page: BroadcastPage) -> PageDone:
        """Enter up to `page.pages` pages of members (ids after `page.after`), each member at
        most once. The cursor is heartbeated after each recorded page, so a retry (the
        worker died) resumes at the page it was in."""
        after, entered, skipped = page.after, 0, 0
        resumed = activity.info().heartbeat_details
        if resumed:
            after, entered, skipped = resumed[0], int(resumed[1]), int(resumed[2])
        # Heartbeats are throttled, so the last one the server kept may lie a few recorded
        # pages behind where the dead attempt was: stay careful until a page needs a fresh
        # entry (the page it died in, or the first after it); later pages are untouched.
        # (Members skipped on a recorded page are counted again: `skipped` may overcount
        # after a crash; the row's `entered` is exact.)
        careful, last = _retried(), after
        for _ in range(page.pages):
            checkpoint = (last, entered, skipped)
            done, fresh = await self._page(
                page,
                after=last,
                careful=careful,
                beat=lambda: activity.heartbeat(*checkpoint),  # noqa: B023
            )
            careful = careful and not fresh
            entered, skipped = entered + done.entered, skipped + done.skipped
            if not done.full or done.last is None:
                return PageDone(
                    entered=entered, skipped=skipped, last=done.last or last, full=False
                )
            last = done.last
            activity.heartbeat(last, entered, skipped)
        return PageDone(entered=entered, skipped=skipped, last=last, full=True)

    async def _page(
        self,
        page: BroadcastPage,
        *,
        after: str | None,
        careful: bool,
        beat: Callable[[], None],
    ) -> tuple[PageDone, bool]:
        """One page, and whether it made a fresh entry. `careful` (a retried
        attempt) first asks Temporal whether a member the dead attempt may have entered
        without recording it is already in. `beat` heartbeats the last recorded cursor
        after each entry."""
        spec = self._spec(page.journey)
        tree = self._tree(page.segment)
        async with self._sessions() as db, db.begin():
            members = await segments.page(
                db, tree=tree, at=page.at, after=after, limit=page.limit, timezones=page.zones
            )
            if not members:
                return PageDone(entered=0, skipped=0, last=None, full=False), False
            user_ids = [m.user_id for m in members]
            events = await broadcasts.entry_events(
                db, broadcast_id=page.broadcast_id, user_ids=user_ids, at=page.at
            )
            done = await broadcasts.entered(db, journey=spec.name, entry_event_ids=events.values())
            last = await runs.last_entries(db, user_ids=user_ids, journeys=[spec.name])
        ours = f"broadcast/{page.broadcast_id}"
        event = JourneyEvent(
            message_id=broadcasts.entry_message_id(page.broadcast_id),
            name=BROADCAST_EVENT,
            properties={"broadcast": page.broadcast_id},
            timestamp=page.at,
        )
        bucket = self._bucket(page.broadcast_id, page.rate)
        limit = asyncio.Semaphore(CONCURRENCY)
        entries: list[dict[str, Any]] = []
        skipped = fresh = 0

        async def one(member: Member) -> None:
            nonlocal skipped, fresh
            workflow_id = ids.journey_workflow_id(spec.name, member.user_id)
            async with limit:
                run_id: str | None = None
                previous = last.get((spec.name, member.user_id, None))
                if careful:
                    memo, found = await entered_by(self._client, workflow_id)
                    run_id = found if memo == ours else None
                if run_id is None:
                    if not reentry_allows(spec, previous, page.at):
                        skipped += 1
                        return
                    if bucket is not None:
                        await bucket.acquire()
                    fresh += 1
                    run_id = await enter(
                        self._client,
                        spec=spec,
                        workflow_id=workflow_id,
                        user_id=member.user_id,
                        key=None,
                        event=event,
                        settings=self._config.journey_overrides(spec.name),
                        task_queue=self._task_queue,
                        memo={ENTRY_MEMO: ours},
                    )
                    beat()
                if run_id is None:
                    skipped += 1  # a once-only journey Temporal still remembers
                    return
                if previous is not None and run_id == previous.run_id:
                    # That run closed its row but not yet its workflow: the entry only
                    # signalled it. Not entered (re-entry needs the run to have ended).
                    skipped += 1
                    return
                entries.append(
                    {
                        "journey": spec.name,
                        "user_id": member.user_id,
                        "key": None,
                        "workflow_id": workflow_id,
                        "run_id": run_id,
                        "entry_event_id": events[member.user_id],
                        "version": self._version,
                        "started_at": page.at,
                    }
                )

        await asyncio.gather(*(one(m) for m in members if events[m.user_id] not in done))
        async with self._sessions() as db, db.begin():
            await runs.add_entries(db, entries)
            await broadcasts.add_progress(
                db, broadcast_id=page.broadcast_id, entered=len(entries), skipped=skipped
            )
        done_page = PageDone(
            entered=len(entries),
            skipped=skipped,
            last=members[-1].user_id,
            full=len(members) == page.limit,
        )
        return done_page, fresh > 0

    def _bucket(self, broadcast_id: str, rate: float | None) -> TokenBucket | None:
        """One bucket per broadcast on this worker, kept across its pages."""
        if rate is None:
            return None
        bucket = self._buckets.get(broadcast_id)
        if bucket is None:
            if len(self._buckets) > 100:
                self._buckets.clear()
            bucket = self._buckets[broadcast_id] = TokenBucket(rate, burst=1.0)
        return bucket
