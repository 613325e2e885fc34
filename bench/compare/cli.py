"""A bare baseline and Nudge, alternately, for each metric of "Keep up with a real event
stream".

    python -m bench.compare [--only NAME[,NAME]] [--pairs N] [sizes...]

Each metric runs N pairs (bare, nudge, bare, nudge, ...) and prints every pair's values
with the 1-minute load average read before each side, both medians, and the ratio of
the medians, always nudge/bare (route-open-runs: with open runs / without). For
throughputs higher is better; for latencies and CPU per run lower is better; each line
says which, and the product's target. steady-ingest is Nudge only, and runs once.

Everything lives in Postgres schemas of their own (dropped at the end) and in dev servers
started per sample (shut down after it). bench/README.md describes each method.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

from bench._common import REPO, count_core_warnings, load_average, print_core_warnings
from bench.compare import cpu, gate, ingestion, latency, routing
from bench.compare.report import Result, print_result, print_summary

Runner = Callable[[argparse.Namespace], Awaitable[list[Result]]]


async def _one(result: Awaitable[Result]) -> list[Result]:
    return [await result]


async def _each(results: Iterable[Awaitable[Result]]) -> list[Result]:
    """One after another (never at once: each would slow the other)."""
    return [await result for result in results]


RUNNERS: dict[str, Runner] = {
    "route-burst": lambda a: _one(routing.route_burst(a.pairs, a.burst, name="route-burst")),
    "route-backlog": lambda a: _one(routing.route_burst(a.pairs, a.backlog, name="route-backlog")),
    "route-open-runs": lambda a: _one(routing.route_open_runs(a.pairs, a.open_burst, a.open_runs)),
    "latency": lambda a: latency.latency(
        a.pairs,
        rates=[float(r) for r in a.rates.split(",")],
        seconds=a.latency_seconds,
        grace=a.latency_grace,
        apart=a.router_apart,
    ),
    "batch-ingest": lambda a: _one(ingestion.batch_ingest(a.pairs, events=a.ingest_events)),
    "gate": lambda a: _one(
        gate.gate(a.pairs, hot=a.gate_hot, spread=a.gate_spread, users=a.gate_users)
    ),
    "worker-cpu": lambda a: _one(cpu.worker_cpu(a.pairs, runs=a.cpu_runs)),
    "steady-ingest": lambda a: _each(
        ingestion.steady_ingest(
            rate=a.steady_rate, batch=a.steady_batch, seconds=a.steady_seconds, triggers=share
        )
        for share in (float(t) for t in a.steady_triggers.split(","))
    ),
}


def _revision() -> str:
    """The commit, and whether the working tree differs from it (and where)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    changed = sorted({line[3:].split("/")[0] for line in dirty if line.strip()})
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


async def run(args: argparse.Namespace, names: Sequence[str]) -> None:
    # SIGTERM (and SIGINT, which a background job may have ignored) cancel the run, so
    # the child processes, dev servers and schemas are all cleaned up on the way out.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    warnings = count_core_warnings()
    print(
        f"bench.compare {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; commit {_revision()};"
        f" {os.cpu_count()} cores; Python {platform.python_version()};"
        f" load average {load_average():.2f}; {args.pairs} pairs; metrics: {', '.join(names)}",
        flush=True,
    )
    results = []
    for name in names:
        started = time.perf_counter()
        print(f"\n--- {name} ---", flush=True)
        for result in await RUNNERS[name](args):
            print_result(result)
            results.append(result)
        print(f"  ({name} took {time.perf_counter() - started:.0f} s)", flush=True)
    print_summary(results)
    print_core_warnings(warnings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated metrics (default: all): {', '.join(RUNNERS)}"
    )
    parser.add_argument("--pairs", type=int, default=3, help="bare/nudge pairs per metric")
    sizes = parser.add_argument_group("sizes")
    sizes.add_argument("--burst", type=int, default=500, help="route-burst: events")
    sizes.add_argument(
        "--backlog", type=int, default=2000, help="route-backlog: events (the issue: 5000)"
    )
    sizes.add_argument(
        "--open-runs", type=int, default=4000, help="route-open-runs: open runs (the issue: 10000)"
    )
    sizes.add_argument("--open-burst", type=int, default=500, help="route-open-runs: events")
    sizes.add_argument("--rates", default="5,20", help="latency: events/s, comma-separated")
    sizes.add_argument(
        "--latency-seconds",
        type=float,
        default=10,
        help="latency: seconds per rate (the issue: 30)",
    )
    sizes.add_argument(
        "--router-apart",
        action="store_true",
        help="latency: the router in a process of its own (as `nudge router`), not in the API",
    )
    sizes.add_argument(
        "--latency-grace", type=float, default=10, help="latency: wait for late sends (s)"
    )
    sizes.add_argument("--ingest-events", type=int, default=20000, help="batch-ingest: events")
    sizes.add_argument("--gate-hot", type=int, default=1000, help="gate: calls for one user")
    sizes.add_argument("--gate-spread", type=int, default=2000, help="gate: calls spread")
    sizes.add_argument("--gate-users", type=int, default=200, help="gate: users to spread over")
    sizes.add_argument("--cpu-runs", type=int, default=200, help="worker-cpu: runs per sample")
    sizes.add_argument("--steady-rate", type=float, default=150, help="steady-ingest: events/s")
    sizes.add_argument("--steady-batch", type=int, default=50, help="steady-ingest: per request")
    sizes.add_argument("--steady-seconds", type=float, default=60, help="steady-ingest: seconds")
    sizes.add_argument(
        "--steady-triggers",
        default="1,0.1",
        help="steady-ingest: shares of the events that start a run, comma-separated",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(RUNNERS)
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        parser.error(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(RUNNERS)}")
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    try:
        asyncio.run(run(args, names))
    except asyncio.CancelledError:
        raise SystemExit("bench.compare: stopped by a signal (cleaned up)") from None
