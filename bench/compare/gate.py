"""gate: send decisions per second, for one hot user and spread over many, in this
process on Postgres (no Temporal).

nudge: `engine.delivery.Deliverer.deliver` (the delivery activity's body: the gate
transaction that locks the user's row, checks consent and the cap, reserves the message
rows, then the console send and its bookkeeping transaction) under a push cap. bare: per
decision, one asyncpg transaction of `SELECT ... FOR UPDATE` on the user's row and an
`INSERT INTO messages`. Both launch every call at once and are bounded by a pool of the
same size (Nudge's engine: 30 kept; asyncpg: max 30), after a warm-up (`WARM_UP`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from bench._common import (
    PEOPLE,
    TEST_TEMPLATES,
    bench_context,
    console_providers,
    keyed_request,
    truncate,
)
from bench.compare import nudge
from bench.compare.bare import bare_decision, bare_pool
from bench.compare.report import Measure, Result, Values, run_pairs
from engine.app.journeys import template_store
from engine.config.nudge_toml import NudgeConfig
from engine.context import Context
from engine.delivery import Deliverer

CAP = {"channel": "push", "limit": 3, "per": "1h"}


HOT = "gate-hot"
WARM = "gate-warm"
WARM_UP = 60
"""Decisions for the user `WARM` made on both sides before the timed ones, not counted:
each side's first transaction on each of its 30 connections prepares its statements (bare's
pool is new in every sample), which in a sample of 200 was a third of bare's time."""
WARM_PLAN = [(WARM, f"warm/{i}") for i in range(WARM_UP)]
IN_FLIGHT = 30
"""Calls in flight at once on either side: the size of Nudge's database pool (30), as a
worker's activities share it; more only queue on the pool."""


def _plan(ids: dict[str, str], hot: int, spread: int) -> dict[str, list[tuple[str, str]]]:
    """(user name, idempotency key) per timed decision: `hot` for the user `HOT`, `spread`
    round-robin over the others (not `WARM`)."""
    others = sorted(name for name in ids if name not in (HOT, WARM))
    return {
        "hot": [(HOT, f"hot/{i}") for i in range(hot)],
        "spread": [(others[i % len(others)], f"spread/{i}") for i in range(spread)],
    }


async def _all(calls: Sequence[Callable[[], Awaitable[object]]]) -> list[object]:
    """Run the calls, `IN_FLIGHT` at a time."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[object]]) -> object:
        async with limit:
            return await call()

    return list(await asyncio.gather(*(one(call) for call in calls)))


async def _timed_all(
    variant: str, calls: Sequence[Callable[[], Awaitable[object]]], into: Values
) -> list[object]:
    """`_all`, recording decisions/s and this process's CPU per decision."""
    cpu, started = time.process_time(), time.perf_counter()
    outcomes = await _all(calls)
    into[f"{variant} decisions/s"] = len(calls) / (time.perf_counter() - started)
    into[f"{variant} CPU"] = (time.process_time() - cpu) / len(calls) * 1000
    return outcomes


async def bare_side(context: Context, ids: dict[str, str], *, hot: int, spread: int) -> Values:
    await truncate(context, keep=PEOPLE)
    values: Values = {}
    async with bare_pool(context.settings.database_schema or "") as pool:

        def calls(plan: list[tuple[str, str]]) -> list[Callable[[], Awaitable[object]]]:
            return [functools.partial(bare_decision, pool, user_id=ids[u], key=k) for u, k in plan]

        await _all(calls(WARM_PLAN))
        for variant, plan in _plan(ids, hot, spread).items():
            await _timed_all(variant, calls(plan), values)
    return values


async def nudge_side(context: Context, ids: dict[str, str], *, hot: int, spread: int) -> Values:
    await truncate(context, keep=PEOPLE)
    providers = console_providers()
    await providers.start()
    values: Values = {}
    try:
        deliverer = Deliverer(
            sessions=context.sessions,
            config=context.config,
            providers=providers,
            templates=template_store(TEST_TEMPLATES),
        )

        async def decide(user_id: str, key: str) -> object:
            return await deliverer.deliver(keyed_request(user_id, key))

        def calls(plan: list[tuple[str, str]]) -> list[Callable[[], Awaitable[object]]]:
            return [functools.partial(decide, ids[u], k) for u, k in plan]

        await _all(calls(WARM_PLAN))
        for variant, plan in _plan(ids, hot, spread).items():
            outcomes = await _timed_all(variant, calls(plan), values)
            statuses = Counter(_status(o) for o in outcomes)
            values[f"{variant} sent"] = float(statuses["sent"])
    finally:
        await providers.close()
    return values


def _status(outcome: object) -> str:
    result = getattr(outcome, "result", None)
    return str(result.status) if result is not None else "deferred"


async def gate(pairs: int, *, hot: int, spread: int, users: int) -> Result:
    result = Result(
        name="gate",
        method=(
            f"{hot} decisions for one user, then {spread} spread round-robin over {users}"
            " users (each with an iOS device, made once), every call launched at once, bounded by a"
            f" 30-connection pool on both sides, after {WARM_UP} untimed decisions for another"
            " user (every pool connection's statements prepared); cap "
            f"{CAP['limit']} push/{CAP['per']}. nudge: Deliverer.deliver (gate transaction +"
            " reservation + console send + its bookkeeping transaction). bare: asyncpg"
            " transaction SELECT ... FROM users WHERE id=$1 FOR UPDATE + INSERT INTO"
            " messages. Message tables emptied before each sample. Ratio"
            " nudge/bare of decisions/s."
        ),
        measures=[
            Measure("hot decisions/s", "decisions/s, one user", True, 0.5),
            Measure("spread decisions/s", f"decisions/s, {users} users", True, 0.5),
            Measure("hot CPU", "ms of this process's CPU per decision", False),
            Measure("spread CPU", "ms of this process's CPU per decision", False),
            Measure("hot sent", "sent (the rest capped)", True),
            Measure("spread sent", "sent (the rest capped)", True),
        ],
    )
    config = NudgeConfig.model_validate({"caps": [CAP]})
    async with bench_context(config=config) as context:
        names = [HOT, WARM, *(f"gate-{i}" for i in range(users))]
        ids = await nudge.users_with_devices(context, names)
        return await run_pairs(
            result,
            pairs,
            lambda i: bare_side(context, ids, hot=hot, spread=spread),
            lambda i: nudge_side(context, ids, hot=hot, spread=spread),
        )
