"""Starting a broadcast (the API and `nudge broadcast` share this): its row first, then its
workflow, `nudge.broadcast` with the id `broadcast/{id}`."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from engine import ids
from engine.clock import now
from engine.store import broadcasts
from engine.system.broadcast import workflow_id
from schemas.broadcasts import BroadcastRequest


class BroadcastRefused(ValueError):
    """The broadcast asked for cannot be started: `field` and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def request_for(
    *,
    journey: str,
    segment: str,
    at: datetime | None,
    local: bool,
    rate: float | None,
    default_zone: str,
) -> BroadcastRequest:
    """The workflow input for a broadcast: with `local`, `at` is a wall-clock time (naive)
    reached in each user's zone; otherwise an instant (aware; a naive one is read in
    `default_zone`), or now when None."""
    if local:
        if at is None:
            raise BroadcastRefused("at", "a local broadcast needs the local date and time")
        if at.tzinfo is not None:
            raise BroadcastRefused("at", "a local time has no offset (each user's zone applies)")
        return BroadcastRequest(
            journey=journey,
            segment=segment,
            local_date=at.date(),
            local_time=at.time().replace(second=0, microsecond=0),
            rate=rate,
            default_zone=default_zone,
        )
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(default_zone))
    return BroadcastRequest(
        journey=journey, segment=segment, at=at, rate=rate, default_zone=default_zone
    )


async def start(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    request: BroadcastRequest,
    *,
    task_queue: str,
) -> str:
    """Record and start the broadcast; its id."""
    broadcast_id = ids.new_broadcast_id()
    local_at = None
    if request.local_date is not None and request.local_time is not None:
        local_at = f"{request.local_date.isoformat()}T{request.local_time:%H:%M}"
    async with sessions() as db, db.begin():
        await broadcasts.create(
            db,
            broadcast_id=broadcast_id,
            journey=request.journey,
            segment=request.segment,
            local=local_at is not None,
            at=request.at,
            local_at=local_at,
            rate=request.rate,
            stamp=now(),
        )
    await client.start_workflow(
        "nudge.broadcast", request, id=workflow_id(broadcast_id), task_queue=task_queue
    )
    return broadcast_id
