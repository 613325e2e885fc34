"""Recurring journeys: a `@journey(schedule=..., audience=..., local=True)` on a Temporal
Schedule (registered idempotently, a pause kept, the cron checked against croniter), and its
weekly firings entering users in three zones at 09:00 on their own clocks, one of them
across a DST change, in virtual time (the dev server's time skipping)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, time, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import select
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    ScheduleSpec,
    WorkflowExecutionStatus,
)

from engine.config.nudge_toml import NudgeConfig
from engine.journey import registry
from engine.schedules import EARLIEST_ZONE, next_runs
from engine.store.models import JourneyRun, User
from engine.temporal import schedules, timeskip
from schemas.broadcasts import BroadcastCursor, BroadcastRequest
from tests.engine.system._weekly import TWeekly
from tests.kit import Stack, eventually
from tests.kit.clock import next_spring_forward

ZONES = {"kei": "Asia/Tokyo", "ann": "Europe/Paris", "nia": "America/New_York"}


async def test_a_schedule_is_registered_idempotently_and_keeps_its_pause(
    temporal_client: Client, task_queue: str
) -> None:
    items = schedules.recurring([TWeekly.__journey__], NudgeConfig())
    handle = temporal_client.get_schedule_handle("schedule/t_weekly")
    try:
        for _ in range(2):  # a second worker start changes nothing
            await schedules.register(
                temporal_client, items, task_queue=task_queue, default_zone="UTC"
            )
        described = await handle.describe()
        spec, policy = described.schedule.spec, described.schedule.policy
        assert _calendar(spec) == (0, 9, 1) and spec.time_zone_name == EARLIEST_ZONE
        assert policy.overlap == ScheduleOverlapPolicy.SKIP
        assert policy.catchup_window == timedelta(hours=1)
        # What Temporal will fire is what croniter (and `nudge schedules list`) says.
        expected = next_runs("0 9 * * MON", zone=EARLIEST_ZONE, after=datetime.now(UTC))
        assert described.info.next_action_times[:3] == expected
        action = cast(ScheduleActionStartWorkflow, described.schedule.action)
        [started] = await temporal_client.data_converter.decode(action.args, [BroadcastRequest])
        assert started == schedules.action_input(items[0], default_zone="UTC")
        assert (started.segment, started.local_time) == ("t_everyone", time(9, 0))

        await handle.pause(note="operator")
        moved = NudgeConfig.model_validate(
            {"schedules": {"t_weekly": {"cron": "0 10 * * TUE", "audience": "t_everyone"}}}
        )
        await schedules.register(
            temporal_client,
            schedules.recurring([TWeekly.__journey__], moved),
            task_queue=task_queue,
            default_zone="UTC",
        )
        described = await handle.describe()
        assert _calendar(described.schedule.spec) == (0, 10, 2)
        assert described.schedule.spec.time_zone_name == "UTC"  # not local any more
        assert described.schedule.state.paused  # the operator's pause survived
    finally:
        await handle.delete()


async def test_weekly_firings_enter_each_zone_at_nine_local_across_a_dst_change(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    [item] = schedules.recurring([TWeekly.__journey__], NudgeConfig())
    fired = schedules.action_input(item, default_zone="UTC")
    change = next_spring_forward("America/New_York")  # a Sunday
    mondays = [change - timedelta(days=6), change + timedelta(days=1)]
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=registry([TWeekly]),
    ) as s:
        for name, zone in ZONES.items():
            await s.profile(name, timezone=zone, attributes={"plan": "weekly"})
        await s.profile("out", timezone="UTC", attributes={"plan": "other"})
        entered: dict[str, list[datetime]] = {name: [] for name in ZONES}
        for monday in mondays:
            # What the schedule's firing for that Monday starts (`TemporalScheduledStartTime`
            # would give the date; here it is set), skipping time to each zone's 09:00.
            firing = fired.model_copy(update={"local_date": monday})
            workflow_id = f"broadcast/schedule-t_weekly-{monday.isoformat()}"
            await timeskip.start_workflow(
                temporal_client,
                workflow="nudge.broadcast",
                workflow_id=workflow_id,
                task_queue=task_queue,
                arg=firing,
            )
            handle = temporal_client.get_workflow_handle(workflow_id, result_type=BroadcastCursor)
            result = await handle.result()
            assert (result.entered, result.skipped, len(result.waves)) == (3, 0, 3)
            for name in ZONES:  # a week passes before the next firing: the runs have ended
                for run in await s.wait_closed(name, count=mondays.index(monday) + 1):
                    await eventually(functools.partial(_closed, s, run))
        async with s.context.sessions() as db:
            rows = await db.execute(
                select(User.external_id, JourneyRun.started_at)
                .join(User, User.id == JourneyRun.user_id)
                .order_by(JourneyRun.started_at)
            )
            for external, at in rows:
                entered[str(external)].append(at)
        for name, zone in ZONES.items():
            local = [at.astimezone(ZoneInfo(zone)) for at in entered[name]]
            assert [t.date() for t in local] == mondays, name
            assert all((t.hour, t.minute // 5) == (9, 0) for t in local), (name, local)
        new_york = [at.astimezone(UTC).hour for at in entered["nia"]]
        assert new_york == [14, 13]  # EST, then EDT: the same 09:00 on the wall
        paris = [at.astimezone(UTC).hour for at in entered["ann"]]
        assert paris in ([8, 8], [8, 7])  # Paris changes on its own date
        assert await s.runs("out") == []  # not in the audience


async def _closed(s: Stack, run: dict[str, object]) -> bool:
    """The run's workflow has closed too (its row closes just before)."""
    described = await s.handle(run).describe()
    return described.status != WorkflowExecutionStatus.RUNNING


def _calendar(spec: ScheduleSpec) -> tuple[int, int, int]:
    """(minute, hour, weekday) of a one-time-a-week spec (Temporal stores a cron this way)."""
    [calendar] = spec.calendars
    [minute], [hour], [weekday] = calendar.minute, calendar.hour, calendar.day_of_week
    return minute.start, hour.start, weekday.start
