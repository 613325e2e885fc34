"""End-to-end journeys/s, send latency, and the cap gate under concurrency.

    python -m bench.journeys [--users N] [--runs M] [--limit L]

Runs the product in-process (`tests.harness.Stack`: API over ASGI, router, worker with
console providers) on Postgres and a Temporal dev server, with the test journey `t_keyed`
(hold 0: on "Cart Touched" it sends one push and ends).

1. Throughput: N users, each with a device, each send one "Cart Touched" (posted as
   `/v1/batch` requests of up to 500). Prints journeys/s (N / seconds from the first batch
   to the last run ended) and send latency (`messages.sent_at - events.received_at`).
2. Cap, end to end: M runs for ONE user against a cap of L pushes per hour. Prints how many
   were sent (must be exactly L) and the wall time.
3. The gate alone: M `Deliverer.deliver` calls for one user (the delivery activity's body:
   the gate transaction that locks the user's row, then the console "send"), one at a time
   and then all at once. Prints milliseconds per call.

Schema `bench_<pid>_<hex>` and the dev server are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from temporalio.client import Client

from bench._common import (
    POSTGRES_URL,
    TEST_TEMPLATES,
    bench_schema,
    console_providers,
    count_core_warnings,
    describe,
    keyed_request,
    print_core_warnings,
    scalar,
    temporal_server,
    wait_for,
)
from engine.app.journeys import template_store
from engine.config.nudge_toml import NudgeConfig
from engine.delivery import Deliverer
from engine.store.users import find_user
from schemas.common import SendStatus
from schemas.journeys import DeliverRequest
from tests.harness import Stack
from tests.journeys_keyed import TKeyed

BATCH = 500  # events per /v1/batch request (the API allows 1000)


def _stack(url: str, client: Client, config: NudgeConfig | None = None) -> Stack:
    return Stack(
        database_url=url,
        client=client,
        task_queue=f"bench-{uuid.uuid4().hex[:8]}",
        journeys={"t_keyed": TKeyed},
        config=config,
    )


def _touch(user: str, cart: str) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Cart Touched",
        "properties": {"cart_id": cart},
    }


async def _devices(s: Stack, users: Sequence[str], concurrency: int = 16) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(user: str) -> None:
        async with gate:
            await s.device(user)

    await asyncio.gather(*(one(u) for u in users))


async def _post(s: Stack, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), BATCH):
        await s.call("POST", "/v1/batch", {"batch": events[start : start + BATCH]})


async def _ended(s: Stack, count: int, *, user: str | None = None) -> float:
    """perf_counter() when `count` runs (of `user`, if given) have ended."""
    sql = "SELECT count(*) FROM journey_runs WHERE status <> 'open'"
    if user is not None:
        sql += " AND user_id = (SELECT id FROM users WHERE external_id = :user)"

    async def probe() -> bool:
        return int(await scalar(s.context, sql, user=user)) >= count

    return await wait_for(probe, what=f"{count} journeys")


async def throughput(url: str, client: Client, users: int) -> None:
    print(f"journeys: {users} users x 1 t_keyed run (hold 0, push, console provider)")
    async with _stack(url, client) as s:
        names = [f"j-{i}" for i in range(users)]
        setup = time.perf_counter()
        await _devices(s, names)
        print(f"  setup: {users} devices registered in {time.perf_counter() - setup:.1f} s")
        started = time.perf_counter()
        await _post(s, [_touch(u, "c1") for u in names])
        posted = time.perf_counter()
        done = await _ended(s, users)
        async with s.context.sessions() as db:
            rows = (
                await db.execute(
                    text(
                        "SELECT e.received_at, e.routed_at, m.sent_at, m.status FROM events e"
                        " JOIN messages m ON m.user_id = e.user_id"
                        " WHERE e.name = 'Cart Touched'"
                    )
                )
            ).all()
        sent = [r for r in rows if r.status == "sent"]
        wall = done - started
        print(
            f"  {users} events accepted in {posted - started:.2f} s; all runs ended at {wall:.2f} s"
        )
        print(f"  => {users / wall:.1f} journeys/s end to end; {len(sent)}/{users} messages sent")
        routed = [(r.routed_at - r.received_at).total_seconds() for r in rows]
        latency = [(r.sent_at - r.received_at).total_seconds() for r in sent]
        print(f"  event received → routed: {describe(routed, scale=1.0, unit='s')}")
        print(f"  event received → sent_at: {describe(latency, scale=1.0, unit='s')}")


async def cap_end_to_end(url: str, client: Client, runs: int, limit: int) -> None:
    config = NudgeConfig.model_validate(
        {"caps": [{"channel": "push", "limit": limit, "per": "1h"}]}
    )
    print(f"cap, end to end: {runs} t_keyed runs for one user, cap {limit} push/h")
    async with _stack(url, client, config) as s:
        await s.device("capped")
        started = time.perf_counter()
        await _post(s, [_touch("capped", f"cart-{i}") for i in range(runs)])
        done = await _ended(s, runs, user="capped")
        # From the table: `/v1/messages` needs a read key and the Stack holds a source key.
        async with s.context.sessions() as db:
            rows = await db.execute(
                text(
                    "SELECT m.status, m.reason FROM messages m JOIN users u ON u.id = m.user_id"
                    " WHERE u.external_id = 'capped'"
                )
            )
            statuses = [(status, reason) for status, reason in rows]
        sent = statuses.count(("sent", None))
        capped = statuses.count(("suppressed", "capped"))
        verdict = "OK" if sent == limit and capped == runs - limit else "WRONG"
        print(
            f"  {sent} sent, {capped} capped ({verdict}); all {runs} runs ended in "
            f"{done - started:.2f} s"
        )
        await gate_alone(s, config, runs)


async def gate_alone(s: Stack, config: NudgeConfig, calls: int) -> None:
    providers = console_providers()
    await providers.start()
    try:
        deliverer = Deliverer(
            sessions=s.context.sessions,
            config=config,
            providers=providers,
            templates=template_store(TEST_TEMPLATES),
        )
        for mode in ("one at a time", "all at once"):
            user = f"gate-{mode.split()[0]}"
            await s.device(user)
            async with s.context.sessions() as db:
                found = await find_user(db, external_id=user)
            assert found is not None
            requests = [keyed_request(found.id, f"{user}/{i}", step="send-1") for i in range(calls)]
            started = time.perf_counter()
            if mode == "one at a time":
                results = [await _timed(deliverer, r) for r in requests]
            else:
                results = list(await asyncio.gather(*(_timed(deliverer, r) for r in requests)))
            wall = time.perf_counter() - started
            sent = sum(status == SendStatus.SENT for status, _ in results)
            timings = [seconds for _, seconds in results]
            print(
                f"  gate {mode}: {calls} deliver() calls for one user in {wall * 1000:.0f} ms "
                f"({wall / calls * 1000:.1f} ms/send; {sent} sent); per call {describe(timings)}"
            )
    finally:
        await providers.close()


async def _timed(deliverer: Deliverer, request: DeliverRequest) -> tuple[str, float]:
    """(send status or "deferred", seconds) of one `deliver` call."""
    begun = time.perf_counter()
    outcome = await deliverer.deliver(request)
    status = outcome.result.status if outcome.result is not None else "deferred"
    return str(status), time.perf_counter() - begun


async def run(args: argparse.Namespace) -> None:
    warnings = count_core_warnings()
    async with bench_schema() as schema, temporal_server() as env:
        url = f"{POSTGRES_URL}#schema={schema}"
        await throughput(url, env.client, args.users)
        await cap_end_to_end(url, env.client, args.runs, args.limit)
    print_core_warnings(warnings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.journeys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=200, help="users, one journey each")
    parser.add_argument("--runs", type=int, default=50, help="runs for the one capped user")
    parser.add_argument("--limit", type=int, default=3, help="the cap: pushes per hour")
    args = parser.parse_args(argv)
    if args.users < 2 or args.runs < 2 or not 0 <= args.limit <= args.runs:
        parser.error("need --users >= 2, --runs >= 2, 0 <= --limit <= --runs")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
