"""The funnel query at size: `engine.analytics.journey_stats` (and the experiment readout)
over 1,000,000 messages of 100,000 runs, beside a bare baseline, a plain `COUNT(*)` over
the same messages table.

    python -m bench.funnels [--runs 100000] [--messages-per-run 10] [--repeat 5]

Rows are generated in Postgres with `generate_series` (seconds, not hours): users, entry
events, runs of one journey spread over 30 days (completed, exited, open; a third
converted; three experiment arms), and per run five send steps of two rows each (a push
to two devices) with a spread of statuses, deferrals and clicks. Then `ANALYZE`, and each
query runs `--repeat` times; the median is printed (ms), with the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench._common import bench_context, load_average
from engine.analytics import experiment_readout, journey_stats
from engine.context import Context

JOURNEY = "bench_journey"
T0 = datetime(2026, 11, 30, tzinfo=UTC)

GENERATE = [
    """INSERT INTO users (id, external_id, attributes, created_at, updated_at)
       SELECT 'u_' || i, 'ext-' || i, '{}'::jsonb, :t0, :t0 FROM generate_series(1, :runs) i""",
    """INSERT INTO events (id, message_id, user_id, type, name, properties, context,
                           timestamp, received_at, routed_at, route_attempts)
       SELECT i, 'e-' || i, 'u_' || i, 'track', 'Go', '{}'::jsonb, '{}'::jsonb,
              :t0, :t0, :t0, 1 FROM generate_series(1, :runs) i""",
    """INSERT INTO journey_runs (id, journey, user_id, workflow_id, run_id, entry_event_id,
                                 status, outcome, version, started_at, ended_at,
                                 converted_at, variant, experiment)
       SELECT i, :journey, 'u_' || i, 'journey/' || :journey || '/u_' || i, 'r-' || i, i,
              CASE WHEN i % 10 < 7 THEN 'completed' WHEN i % 10 < 9 THEN 'exited'
                   ELSE 'open' END,
              CASE WHEN i % 10 < 4 THEN 'returned' WHEN i % 10 < 7 THEN 'offered'
                   WHEN i % 10 < 9 THEN 'exited:Order Completed' END,
              'v' || (i % 2),
              :t0 - (i % 30) * interval '1 day' - (i % 1440) * interval '1 minute',
              CASE WHEN i % 10 < 9 THEN :t0 END,
              CASE WHEN i % 3 = 0 THEN :t0 END,
              CASE i % 3 WHEN 0 THEN 'discount' WHEN 1 THEN 'content' ELSE 'holdout' END,
              'bench_exp'
       FROM generate_series(1, :runs) i""",
    """INSERT INTO messages (id, idempotency_key, user_id, journey, workflow_id, run_id, step,
                             channel, template, transactional, status, reason, attempts,
                             deferrals, created_at, updated_at, clicked_at)
       SELECT 'm' || j, 'k' || j, 'u_' || r, :journey, 'journey/' || :journey || '/u_' || r,
              'r-' || r, 'step_' || s, 'push', 'tpl_' || s, false,
              CASE WHEN j % 11 = 0 THEN 'suppressed' WHEN j % 13 = 0 THEN 'failed'
                   WHEN j % 3 = 0 THEN 'delivered' ELSE 'sent' END,
              CASE WHEN j % 11 = 0 THEN 'capped' WHEN j % 13 = 0 THEN 'invalid' END,
              1, CASE WHEN j % 17 = 0 THEN 1 ELSE 0 END,
              :t0 - (r % 30) * interval '1 day' + s * interval '1 hour', :t0,
              CASE WHEN j % 7 = 0 THEN :t0 END
       FROM (SELECT j, (j - 1) / :per + 1 AS r, ((j - 1) % :per) / 2 AS s
             FROM generate_series(1, :runs * :per) j) g""",
    """UPDATE journey_runs SET conversion_message_id = 'm' || ((id - 1) * :per + 1)
       WHERE converted_at IS NOT NULL""",
]


async def generate(context: Context, *, runs: int, per: int) -> float:
    started = time.perf_counter()
    params = {"runs": runs, "per": per, "t0": T0}
    async with context.sessions() as db:
        for sql in GENERATE:
            # The journey is a constant of this file (no quoting issue); asyncpg cannot type
            # one parameter used as both a column value and in a concatenation.
            sql = sql.replace(":journey", f"'{JOURNEY}'").replace(":t0", "CAST(:t0 AS timestamptz)")
            sql = sql.replace(":runs", "CAST(:runs AS integer)").replace(
                ":per", "CAST(:per AS integer)"
            )
            await db.execute(text(sql), params)
        await db.commit()
    async with context.sessions() as db:
        await db.execute(text("ANALYZE"))
        await db.commit()
    return time.perf_counter() - started


async def timed(repeat: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Median wall time (ms) of `repeat` runs of `work`, after one warm-up run."""
    result = await work()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = await work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


async def main(runs: int, per: int, repeat: int) -> None:
    async with bench_context() as context:
        seconds = await generate(context, runs=runs, per=per)
        print(f"generated {runs:,} runs and {runs * per:,} messages in {seconds:.1f} s")

        async def baseline() -> Any:
            async with context.sessions() as db:
                return (await db.execute(text("SELECT count(*) FROM messages"))).scalar()

        def stats(**options: Any) -> Callable[[], Awaitable[Any]]:
            async def work() -> Any:
                async with context.sessions() as db:
                    return await journey_stats(db, JOURNEY, **options)

            return work

        async def readout() -> Any:
            async with context.sessions() as db:
                return await experiment_readout(db, "bench_exp")

        base_ms, count = await timed(repeat, baseline)
        print(f"load average {load_average():.1f}; median of {repeat} runs after a warm-up")
        print(f"{'query':<44} {'ms':>9} {'x baseline':>11}")
        print(f"{'baseline: SELECT count(*) FROM messages':<44} {base_ms:>9.1f} {1:>11.2f}")
        assert count == runs * per
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("journey_stats, all time (100% of runs)", stats()),
            ("journey_stats, last 7 days (~23%)", stats(since=T0 - timedelta(days=7))),
            ("journey_stats, one variant (33%)", stats(variant="content")),
            ("experiment_readout (3 arms)", readout),
        ]
        for label, work in cases:
            ms, _ = await timed(repeat, work)
            print(f"{label:<44} {ms:>9.1f} {ms / base_ms:>11.2f}")
        full = await stats()()
        print(
            f"check: entered {full.entered:,}, steps {len(full.steps)}, "
            f"reached step_0 {full.steps[0].reached:,}, converted {full.converted:,}"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--messages-per-run", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.messages_per_run, args.repeat))


if __name__ == "__main__":
    cli()
