"""Recurring journeys on Temporal Schedules: one schedule per journey (`schedule/{name}`)
whose action starts the broadcast workflow (`nudge.broadcast`) for the journey's audience.

`register` creates each schedule or updates it in place (the worker calls it at start, so
it is idempotent: a restart changes nothing, a changed cron or audience is applied). An
operator's pause survives both. A local schedule fires in the earliest zone (UTC+14) and
the broadcast waits for each user's own wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from engine.config.nudge_toml import NudgeConfig
from engine.journey import JourneySpec
from engine.schedules import Recurring, time_of_day
from schemas.broadcasts import BroadcastRequest

OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
}


def schedule_id(journey: str) -> str:
    return f"schedule/{journey}"


def recurring(specs: Iterable[JourneySpec], config: NudgeConfig) -> list[Recurring]:
    """Every journey's schedule: `@journey(schedule=...)`, overridden or added by
    `[schedules.<journey>]` in `nudge.toml`."""
    found: dict[str, Recurring] = {}
    names = set()
    for spec in specs:
        names.add(spec.name)
        if spec.schedule and spec.audience:
            found[spec.name] = Recurring(
                journey=spec.name,
                cron=spec.schedule,
                audience=spec.audience,
                local=spec.local,
                timezone=config.timezone,
            )
    for name, item in config.schedules.items():
        if name not in names:
            raise ValueError(f"nudge.toml [schedules.{name}]: no journey {name!r}")
        found[name] = Recurring(
            journey=name,
            cron=item.cron,
            audience=item.audience,
            local=item.local,
            timezone=item.timezone,
            overlap=item.overlap,
            catchup_window=item.catchup_window,
            rate=item.rate,
            paused=item.paused,
        )
    return [found[n] for n in sorted(found)]


def action_input(item: Recurring, *, default_zone: str) -> BroadcastRequest:
    """What each firing starts the broadcast with."""
    return BroadcastRequest(
        journey=item.journey,
        segment=item.audience,
        local_time=time_of_day(item.cron) if item.local else None,
        rate=item.rate,
        default_zone=default_zone,
        schedule=item.journey,
    )


def build(item: Recurring, *, task_queue: str, default_zone: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "nudge.broadcast",
            action_input(item, default_zone=default_zone),
            # Temporal appends each firing's time, so every firing is its own broadcast.
            id=f"broadcast/schedule-{item.journey}",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[item.cron], time_zone_name=item.fires_in),
        policy=SchedulePolicy(
            overlap=OVERLAP[item.overlap], catchup_window=max(item.catchup_window, MIN_CATCHUP)
        ),
        state=ScheduleState(paused=item.paused, note="nudge.toml" if item.paused else None),
    )


MIN_CATCHUP = timedelta(seconds=10)
"""Temporal's smallest catch-up window."""


async def register(
    client: Client, items: Iterable[Recurring], *, task_queue: str, default_zone: str
) -> list[str]:
    """Create or update each schedule; the ids. Keeps a pause set by an operator."""
    done = []
    for item in items:
        wanted = build(item, task_queue=task_queue, default_zone=default_zone)
        try:
            await client.create_schedule(schedule_id(item.journey), wanted)
        except ScheduleAlreadyRunningError:

            def keep_state(
                current: ScheduleUpdateInput, wanted: Schedule = wanted
            ) -> ScheduleUpdate:
                state = current.description.schedule.state
                paused = state.paused or wanted.state.paused
                wanted.state = ScheduleState(paused=paused, note=state.note)
                return ScheduleUpdate(schedule=wanted)

            await client.get_schedule_handle(schedule_id(item.journey)).update(keep_state)
        done.append(schedule_id(item.journey))
    return done
