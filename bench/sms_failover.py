"""SMS failover: the SMSC down for a minute while N SMS steps come due.

`python -m bench.sms_failover [--sms N] [--down S]`

Runs the product in-process (`tests.kit.Stack`, `[sms] lanes = true`) with two providers in
route order: the in-process SMPP 3.4 SMSC (`tests.peers.smpp34_peer`, priority 1) and the
Twilio-shaped peer (`tests.peers.twilio`, priority 2). N/2 subscribed users are made while
the bind is up; then the SMSC stops (every connection dropped, like a crash), and once the
bind is seen down each user tracks `Sms Start` in one `/v1/batch`: `t_sms` sends two SMS
steps, so N come due. The SMSC listens again S seconds after it stopped.

It waits for every run to end and every message row to be final, then prints where each SMS
went (Twilio while the SMSC was down, after it was back, or the SMSC), whether each step
reached its number exactly once across both peers, the message rows, and how long the N
took. Exits 1 when an SMS was lost or sent twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bench._common import (
    POSTGRES_URL,
    bench_schema,
    count_core_warnings,
    load_average,
    print_core_warnings,
    temporal_server,
    wait_for,
)
from engine.channels.sms.route import SmsRoute
from engine.store.models import JourneyRun, Message
from schemas.common import MessageStatus, RunStatus
from tests.kit import Stack
from tests.kit.sms import sms_stack, smsc_provider, subscriber, twilio_provider
from tests.peers.smpp34_peer import Smpp34Peer
from tests.peers.twilio import TwilioPeer

FOLLOWUP = "Anything else? Reply STOP to opt out."  # tests/templates/t_sms/followup.liquid
SETTLE_LIMIT = 900.0  # seconds the runs and rows may take to finish after the batch
MAKERS = 8  # users made at once through the API


@dataclass
class Clock:
    """Monotonic instants of the run, in seconds."""

    stopped: float = 0.0
    seen_down: float = 0.0
    tracked: float = 0.0
    restarted: float = 0.0
    rebound: float = 0.0


def phone(n: int) -> str:
    """The number of user `n`."""
    return f"+1415555{n:04d}"


async def make_users(s: Stack, count: int) -> None:
    """`count` subscribers through the API, `MAKERS` at a time."""
    gate = asyncio.Semaphore(MAKERS)

    async def one(n: int) -> None:
        async with gate:
            await subscriber(s, f"u{n:04d}", phone(n))

    await asyncio.gather(*(one(n) for n in range(count)))


async def settled(s: Stack, users: int, sms: int) -> bool:
    """Every run ended and every message row past `pending`."""
    async with s.context.sessions() as db:
        ended = await db.scalar(
            select(func.count()).select_from(JourneyRun).where(JourneyRun.status != RunStatus.OPEN)
        )
        final = await db.scalar(
            select(func.count()).select_from(Message).where(Message.status != MessageStatus.PENDING)
        )
    return ended == users and final == sms


async def restart_after(
    smsc: Smpp34Peer, bound: Callable[[], Awaitable[bool]], clock: Clock, down: float
) -> None:
    """Start the SMSC again `down` seconds after it stopped; note when the bind is back."""
    await asyncio.sleep(max(0.0, clock.stopped + down - time.monotonic()))
    await smsc.start()
    clock.restarted = time.monotonic()
    clock.rebound = await wait_for(bound, what="SMPP bind after the restart", limit=120)


async def run(args: argparse.Namespace) -> int:
    users = args.sms // 2
    async with temporal_server() as server, bench_schema() as schema, TwilioPeer() as twilio:
        os.environ["NUDGE_TWILIO_AUTH_TOKEN"] = twilio.auth_token
        os.environ["NUDGE_SMPP_PASSWORD"] = "bench-password"
        smsc = Smpp34Peer()
        await smsc.start()
        providers = [smsc_provider(smsc.port), twilio_provider(twilio, priority=2)]
        url = f"{POSTGRES_URL}#schema={schema}"
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        clock = Clock()
        try:
            async with sms_stack(url, server.client, queue, providers, lanes=True) as s:
                [route] = [p for p in s.providers.unique() if isinstance(p, SmsRoute)]
                bridge = route.entries[0].provider.bridge  # type: ignore[attr-defined]

                async def bound() -> bool:
                    return bool(bridge.bound)

                async def unbound() -> bool:
                    return not bridge.bound

                await make_users(s, users)
                await wait_for(bound, what="SMPP bind")
                clock.stopped = time.monotonic()
                await smsc.stop()
                clock.seen_down = await wait_for(unbound, what="SMPP bind down")
                restart = asyncio.create_task(restart_after(smsc, bound, clock, args.down))
                events = [
                    {
                        "type": "track",
                        "userId": f"u{n:04d}",
                        "event": "Sms Start",
                        "properties": {"text": f"hello {n}"},
                    }
                    for n in range(users)
                ]
                tracked_wall = datetime.now(UTC)
                clock.tracked = time.monotonic()
                await s.call("POST", "/v1/batch", {"batch": events})
                await wait_for(
                    lambda: settled(s, users, 2 * users),
                    what="runs ended, rows final",
                    limit=SETTLE_LIMIT,
                    every=0.5,
                )
                await restart
                async with s.context.sessions() as db:
                    rows = list(await db.scalars(select(Message)))
        finally:
            await smsc.close()
    return report(args, clock, tracked_wall, rows, twilio, smsc)


def report(
    args: argparse.Namespace,
    clock: Clock,
    tracked_wall: datetime,
    rows: list[Message],
    twilio: TwilioPeer,
    smsc: Smpp34Peer,
) -> int:
    users = args.sms // 2
    expected = {(phone(n), text) for n in range(users) for text in (f"hello {n}", FOLLOWUP)}
    seen = Counter((x.to, x.body) for x in twilio.submits)
    seen.update(("+" + x.destination, x.text) for x in smsc.submits)
    twice = sum(n > 1 for n in seen.values())
    lost = len(expected - seen.keys())
    stray = len(seen.keys() - expected)
    while_down = sum(x.at < clock.restarted for x in twilio.submits)
    sent_at = sorted(r.sent_at - tracked_wall for r in rows if r.sent_at is not None)
    first, last = (sent_at[0], sent_at[-1]) if sent_at else (timedelta(0), timedelta(0))
    print(
        f"SMSC stopped; bind seen down after {clock.seen_down - clock.stopped:.2f} s; "
        f"batch of {users} tracks {clock.tracked - clock.stopped:.2f} s after the stop"
    )
    print(
        f"SMSC back {clock.restarted - clock.stopped:.1f} s after the stop; bind up again "
        f"{clock.rebound - clock.restarted:.1f} s later"
    )
    print(
        f"Twilio got {len(twilio.submits)} SMS ({while_down} while the SMSC was down, "
        f"{len(twilio.submits) - while_down} after it was back); the SMSC got "
        f"{len(smsc.submits)}"
    )
    print(
        f"each step once: {len(expected) - lost} of {len(expected)} reached; {twice} twice, "
        f"{lost} lost, {stray} unexpected"
    )
    statuses = Counter(f"{r.status} via {r.provider}" for r in rows)
    ids = {x.sid for x in twilio.submits} | {x.message_id for x in smsc.submits}
    matched = sorted(str(r.provider_id) for r in rows) == sorted(ids)
    print(
        f"message rows: {len(rows)}; "
        + ", ".join(f"{n} {what}" for what, n in sorted(statuses.items()))
        + f"; provider ids {'match' if matched else 'do NOT match'} the peers'"
    )
    rate = twilio.rate()
    print(
        f"the {len(sent_at)} SMS went out within {last.total_seconds():.1f} s of the batch, "
        f"the first after {first.total_seconds():.2f} s (the SMSC stayed down "
        f"{clock.restarted - clock.tracked:.1f} s after the batch); Twilio at "
        f"{rate.mean_per_second:.1f}/s (max {rate.max_per_second} in a second)"
    )
    print(f"load average after: {load_average():.1f}")
    bad = twice or lost or stray or len(rows) != args.sms or not matched
    bad = bad or any(r.provider is None or r.status == MessageStatus.PENDING for r in rows)
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sms", type=int, default=500, help="SMS that come due (default 500)")
    parser.add_argument("--down", type=float, default=60.0, help="seconds down (default 60)")
    args = parser.parse_args()
    warnings = count_core_warnings()
    print(f"load average before: {load_average():.1f}")
    code = asyncio.run(run(args))
    print_core_warnings(warnings)
    sys.exit(code)


if __name__ == "__main__":
    main()
