"""SMS throughput limits across workers: does a provider's `tps` hold for the whole fleet?

`python -m bench.sms_tps [--workers W] [--tps S] [--runs R] [--texts T]`

The product against the Twilio-shaped peer (`tests.peers.twilio`), which stamps every submit
it accepts, on Postgres and a Temporal dev server: this process runs the API, the router and
one worker (`tests.kit.Stack`); W - 1 more workers run as child processes (`build_worker` and
`lane_workers`, as `nudge worker` builds them), each with its own provider clients. R runs
of `t_burst` each queue T marketing SMS at once (`at_once`), so the provider's queue holds a
backlog for the whole run and the limit, not the feeding, sets the pace. Twice:

- **lanes** (the default): each SMS a delivery activity on the provider's own task queue,
  limited by the Temporal server for every worker together
  (`max_task_queue_activities_per_second = tps`);
- **one queue** (`[sms] lanes = false`): on the journeys' queue, each worker pacing its own
  sends with a token bucket at `tps`, so W workers may send up to W x `tps`.

It prints, per mode, the rate the peer saw over the steady part of the run (from two seconds
after the first submit, past the limiter's initial burst, to one second before the last),
its ratio to the limit, the busiest and quietest whole second, and how many SMS each worker
sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from bisect import bisect_left
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

from bench._common import (
    POSTGRES_URL,
    READY,
    Child,
    bench_schema,
    bench_settings,
    child_process,
    load_average,
    temporal_server,
)
from engine.app.providers import build_providers
from engine.config.nudge_toml import NudgeConfig
from engine.observability.metrics import REGISTRY
from tests.journeys import TEST_JOURNEYS
from tests.kit import Stack
from tests.kit.sms import twilio_provider
from tests.peers.twilio import TwilioPeer

STEADY_FROM = 2.0  # seconds after the first submit: the server's limiter lets ~1 s through
STEADY_TO = 1.0  # seconds before the last submit


def config_for(peer: TwilioPeer, *, tps: float, lanes: bool, texts: int) -> dict[str, Any]:
    provider = twilio_provider(peer, tps=tps)
    return {
        "sms": {"lanes": lanes, "providers": [provider]},
        "journeys": {"t_burst": {"texts": texts, "at_once": True}},
    }


def sent_here() -> int:
    """SMS this process's workers sent (the delivery metric)."""
    value = REGISTRY.get_sample_value("nudge_sends_total", {"channel": "sms", "outcome": "sent"})
    return int(value or 0)


async def serve(target: str, schema: str, queue: str, config: str, roles: str) -> None:
    """A child: one worker process (`roles`, comma-separated: `nudge worker --only`) until
    SIGTERM, then it prints how many SMS it sent."""
    from engine.app.worker import Role, build_workers, running
    from engine.context import Context
    from engine.temporal.client import connect
    from tests.kit import kit_templates

    settings = bench_settings(schema, temporal_address=target, task_queue=queue)
    nudge = NudgeConfig.model_validate(json.loads(config))
    async with Context.opened(settings, config=nudge) as context:
        client = await connect(settings)
        providers = build_providers(context)
        await providers.start()
        try:
            templates = kit_templates()
            workers = build_workers(
                client,
                context,
                providers=providers,
                journeys=TEST_JOURNEYS,
                templates=templates,
                roles={Role(r) for r in roles.split(",")},
            )
            async with running(workers):
                print(READY, flush=True)
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGTERM, stop.set)
                await stop.wait()
        finally:
            await providers.close()
    print(f"sent {sent_here()}", flush=True)


def steady(times: Sequence[float]) -> tuple[float, int, int]:
    """Mean submits per second over the steady window, and the most and fewest submits in
    any whole second of it."""
    ts = sorted(times)
    start, end = ts[0] + STEADY_FROM, ts[-1] - STEADY_TO
    window = ts[bisect_left(ts, start) : bisect_left(ts, end)]
    seconds = [
        bisect_left(ts, start + n + 1) - bisect_left(ts, start + n) for n in range(int(end - start))
    ]
    return len(window) / (end - start), max(seconds, default=0), min(seconds, default=0)


async def run_mode(lanes: bool, args: argparse.Namespace) -> dict[str, Any]:
    async with temporal_server() as server, bench_schema() as schema, TwilioPeer() as peer:
        os.environ["NUDGE_TWILIO_AUTH_TOKEN"] = peer.auth_token
        config = config_for(peer, tps=args.tps, lanes=lanes, texts=args.texts)
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        before = sent_here()
        async with (
            Stack(
                database_url=f"{POSTGRES_URL}#schema={schema}",
                client=server.client,
                task_queue=queue,
                journeys=TEST_JOURNEYS,
                config=NudgeConfig.model_validate(config),
                providers_factory=build_providers,
            ) as s,
            workers(server.target, schema, queue, config, args.workers - 1) as kids,
        ):
            users = [f"m{n:03d}" for n in range(args.runs)]
            for n, user in enumerate(users):
                await s.profile(user, phone=f"+1415557{n:04d}", timezone="UTC")
                await s.consent(user, "sms", "subscribed")
            events = [
                {"type": "track", "userId": u, "event": "Burst Start", "properties": {"text": u}}
                for u in users
            ]
            await s.call("POST", "/v1/batch", {"batch": events})
            total = args.runs * args.texts
            await peer.wait_for_messages(total, within=total / args.tps * 4 + 120)
            here = sent_here() - before
        per_worker = [here] + [int(k.report[-1].split()[-1]) for k in kids]
        rate, most, fewest = steady([x.at for x in peer.submits])
        return {
            "count": len(peer.submits),
            "rate": rate,
            "most": most,
            "fewest": fewest,
            "per_worker": per_worker,
        }


@contextlib.asynccontextmanager
async def workers(
    target: str,
    schema: str,
    queue: str,
    config: dict[str, Any],
    count: int,
    roles: Collection[str] = ("journeys", "transactional"),
) -> AsyncIterator[list[Child]]:
    """`count` worker child processes (serving `roles`) for the length of a block."""
    async with contextlib.AsyncExitStack() as stack:
        args = (target, schema, queue, json.dumps(config), ",".join(roles))
        yield [
            await stack.enter_async_context(child_process("bench.sms_tps", "worker", *args))
            for _ in range(count)
        ]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        asyncio.run(serve(*argv[1:6]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="workers (default 3)")
    parser.add_argument("--tps", type=float, default=20.0, help="provider limit (default 20)")
    parser.add_argument("--runs", type=int, default=60, help="t_burst runs (default 60)")
    parser.add_argument("--texts", type=int, default=20, help="SMS per run (default 20)")
    args = parser.parse_args(argv)
    print(
        f"load average before: {load_average():.1f}; {args.workers} workers, "
        f"limit {args.tps:g}/s, {args.runs * args.texts} SMS"
    )
    for name, lanes in (("lanes", True), ("one queue", False)):
        r = asyncio.run(run_mode(lanes, args))
        print(
            f"{name:9}  {r['count']} SMS, steady {r['rate']:.1f}/s = {r['rate'] / args.tps:.2f}x "
            f"the limit (whole seconds {r['fewest']}..{r['most']}); "
            f"per worker {'/'.join(map(str, r['per_worker']))}; "
            f"load average {load_average():.1f}"
        )


if __name__ == "__main__":
    main()
