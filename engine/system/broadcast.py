"""`Broadcast` (`nudge.broadcast`): enter every member of a segment into a journey, once.

One workflow per broadcast (id `broadcast/{id}`; a schedule's firings add their timestamp).
It counts the audience per zone, turns the wanted time into waves (one instant per zone
when the time is local: 09:00 in Sydney comes before 09:00 in Paris, each DST-correct), and
per wave pages through the members by user id (keyset pages; an activity call enters
`pages_per_call` of them, heartbeating its cursor after each, so the journeys it starts do
not hold up the next page behind their own workflow tasks). It continues as new every
`calls_per_run` calls (or when Temporal suggests it), carrying only its cursor, so a
broadcast to millions keeps a small history. A call killed mid-way is retried by Temporal
from its last heartbeat and enters only who it had not (see `activities/broadcasts.py`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError

from engine.localtime import resolve_local
from schemas.broadcasts import (
    BroadcastBegin,
    BroadcastCursor,
    BroadcastMark,
    BroadcastPage,
    BroadcastPlan,
    BroadcastRequest,
    BroadcastStatus,
    PageDone,
    Wave,
)

EARLIEST_ZONE = "Pacific/Kiritimati"
"""UTC+14: the first zone to reach any wall-clock time. A local schedule fires there, and
every other zone's instant of the same local date and time follows within 26 hours."""
SCHEDULED_AT = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
WORKFLOW_PREFIX = "broadcast/"
RETRY = RetryPolicy(
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[
        "UnknownJourney",
        "UnknownSegment",
    ],
)
SHORT = timedelta(seconds=60)


def workflow_id(broadcast_id: str) -> str:
    return WORKFLOW_PREFIX + broadcast_id


def waves(
    plan: BroadcastPlan,
    *,
    local_date: date,
    local_time: time,
    default_zone: str,
) -> list[Wave]:
    """One wave per distinct instant at which a zone's wall clock reads `local_date`
    `local_time`; users without a zone (key "") follow `default_zone`. Pure."""
    by_instant: dict[datetime, list[str | None]] = {}
    for key in sorted(plan.zones):
        name = key or default_zone
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo(default_zone)
        day = datetime.combine(local_date, time(12), tzinfo=zone)
        instant = resolve_local(day, local_time, zone)
        by_instant.setdefault(instant, []).append(key or None)
    return [Wave(at=at, zones=zones) for at, zones in sorted(by_instant.items())]


@workflow.defn(name="nudge.broadcast")
class Broadcast:
    @workflow.run
    async def run(self, request: BroadcastRequest) -> BroadcastCursor:
        broadcast_id = workflow.info().workflow_id.removeprefix(WORKFLOW_PREFIX)
        try:
            return await self._run(broadcast_id, request)
        except ActivityError:
            # A journey or segment that does not exist (any other error is retried).
            await self._mark(broadcast_id, BroadcastStatus.FAILED)
            raise

    async def _run(self, broadcast_id: str, request: BroadcastRequest) -> BroadcastCursor:
        cursor = request.cursor or await self._plan(broadcast_id, request)
        calls = 0
        while cursor.wave < len(cursor.waves):
            wave = cursor.waves[cursor.wave]
            if cursor.after is None and wave.at > workflow.now():
                await self._mark(broadcast_id, BroadcastStatus.WAITING, next_at=wave.at)
                await workflow.sleep(wave.at - workflow.now())
            done: PageDone = await workflow.execute_activity(
                "nudge.broadcast_page",
                BroadcastPage(
                    broadcast_id=broadcast_id,
                    journey=request.journey,
                    segment=request.segment,
                    zones=wave.zones if request.local_time is not None else None,
                    after=cursor.after,
                    limit=request.page_size,
                    pages=request.pages_per_call,
                    rate=request.rate,
                    at=workflow.now(),
                ),
                result_type=PageDone,
                start_to_close_timeout=self._page_timeout(request),
                heartbeat_timeout=self._heartbeat_timeout(request),
                retry_policy=RETRY,
            )
            cursor.entered += done.entered
            cursor.skipped += done.skipped
            if done.full and done.last is not None:
                cursor.after = done.last
            else:
                cursor.wave, cursor.after = cursor.wave + 1, None
            calls += 1
            if cursor.wave < len(cursor.waves) and (
                calls >= request.calls_per_run or workflow.info().is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(request.model_copy(update={"cursor": cursor}))
        await self._mark(broadcast_id, BroadcastStatus.COMPLETED)
        return cursor

    async def _plan(self, broadcast_id: str, request: BroadcastRequest) -> BroadcastCursor:
        plan: BroadcastPlan = await workflow.execute_activity(
            "nudge.broadcast_begin",
            BroadcastBegin(broadcast_id=broadcast_id, request=request, at=workflow.now()),
            result_type=BroadcastPlan,
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )
        if request.local_time is not None:
            local_date = (
                request.local_date or self._fired_at().astimezone(ZoneInfo(EARLIEST_ZONE)).date()
            )
            planned = waves(
                plan,
                local_date=local_date,
                local_time=request.local_time,
                default_zone=request.default_zone,
            )
        else:
            planned = [Wave(at=request.at or workflow.now(), zones=[])]
        return BroadcastCursor(waves=planned)

    def _fired_at(self) -> datetime:
        """When a schedule meant this firing to start (its own time, even when late), else now."""
        scheduled = workflow.info().typed_search_attributes.get(SCHEDULED_AT)
        return scheduled.astimezone(UTC) if scheduled is not None else workflow.now()

    async def _mark(
        self, broadcast_id: str, status: BroadcastStatus, *, next_at: datetime | None = None
    ) -> None:
        await workflow.execute_activity(
            "nudge.broadcast_mark",
            BroadcastMark(
                broadcast_id=broadcast_id, status=status, next_at=next_at, at=workflow.now()
            ),
            start_to_close_timeout=SHORT,
            retry_policy=RETRY,
        )

    @staticmethod
    def _page_timeout(request: BroadcastRequest) -> timedelta:
        count = request.page_size * request.pages_per_call
        paced = count / request.rate if request.rate else 0.0
        return timedelta(seconds=600 + 2 * paced)

    @staticmethod
    def _heartbeat_timeout(request: BroadcastRequest) -> timedelta:
        # A heartbeat follows each entry; a slow rate spaces them out.
        gap = 1 / request.rate if request.rate else 0.0
        return timedelta(seconds=max(20.0, 3 * gap + 10))
