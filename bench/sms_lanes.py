"""SMS lanes: how long an OTP waits when a marketing burst is queued for the same provider.

`python -m bench.sms_lanes [--runs R] [--texts T] [--tps S] [--otps O] [--backlog N]
[--only MODE]`

Runs the product in-process (`tests.kit.Stack`: API over ASGI, router, worker) against the
Twilio-shaped peer (`tests.peers.twilio`) on Postgres and a Temporal dev server:

- **one queue** (`[sms] lanes = false`): every SMS is a delivery activity on the journeys'
  task queue, paced by the provider's token bucket in the worker (`tps`);
- **lanes** (the default): marketing SMS on the provider's lane, transactional ones on its
  `.tx` lane, each limited by Temporal (`max_task_queue_activities_per_second`);
- **lanes, N queued**: as lanes, with N marketing SMS queued at once on the provider's lane
  (N / 20 runs of `t_burst` with `at_once`, each queueing 20 deliveries): O OTPs while
  the journeys queue it, O more once it is queued;
- **lanes, N queued, apart** (`apart`): the same, deployed as production would be: the burst's
  journeys and marketing lane on a worker process of their own (`nudge worker --only
  journeys`), this process serving the API, the router and `--only transactional`;

and, as the baseline, **no burst** (lanes, no marketing SMS: what an OTP costs on this
machine through the whole product). The first two burst modes: R runs of `t_burst` queue
R x T marketing SMS one after another at a provider limit of S per second (below what this
machine feeds, so a backlog builds); once a third of them went out, O users ask for an OTP
(`t_otp`, transactional) one second apart. It prints the marketing rate the peer saw, and the OTP
latency from the accepted `/v1/track` to the peer's submit (p50 / max).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from bench._common import POSTGRES_URL, bench_schema, load_average, temporal_server
from bench.sms_tps import workers
from engine.app.providers import build_providers
from engine.app.worker import ROLES, Role
from engine.config.nudge_toml import NudgeConfig
from engine.delivery.lanes import lane_queue
from tests.journeys import TBurst, TOtp
from tests.kit import Stack, eventually
from tests.kit.sms import twilio_provider
from tests.peers.twilio import TwilioPeer, submit_rate, wait_until

AT_ONCE = 20
"""Deliveries one `t_burst` run queues at once in the backlog mode."""
QUEUED = 0.99
"""The share of the burst on the lane (by the server's estimate) or sent: \"queued\"."""


@dataclass(frozen=True)
class Mode:
    name: str
    lanes: bool
    runs: int
    texts: int
    at_once: bool = False
    apart: bool = False
    """The burst's journeys on a worker process of their own (`nudge worker --only
    journeys`); this one serves API, router and `--only transactional`."""


async def backlog_of(client: Client, queue: str) -> int:
    """The server's estimate of the activity tasks waiting on `queue`."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_stats=True,
        ),
        timeout=timedelta(seconds=10),
    )
    return int(answer.stats.approximate_backlog_count)


async def run_mode(mode: Mode, args: argparse.Namespace) -> dict[str, Any]:
    async with temporal_server() as server, bench_schema() as schema, TwilioPeer() as peer:
        os.environ["NUDGE_TWILIO_AUTH_TOKEN"] = peer.auth_token
        provider = twilio_provider(peer, tps=args.tps)
        settings = {
            "sms": {"lanes": mode.lanes, "providers": [provider]},
            "journeys": {"t_burst": {"texts": mode.texts, "at_once": mode.at_once}},
        }
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        async with (
            Stack(
                database_url=f"{POSTGRES_URL}#schema={schema}",
                client=server.client,
                task_queue=queue,
                journeys={"t_burst": TBurst, "t_otp": TOtp},
                config=NudgeConfig.model_validate(settings),
                providers_factory=build_providers,
                roles={Role.TRANSACTIONAL} if mode.apart else ROLES,
            ) as s,
            workers(server.target, schema, queue, settings, int(mode.apart), ("journeys",)),
        ):
            burst = [f"m{n:03d}" for n in range(mode.runs)]
            otps = [f"o{n:02d}" for n in range(args.otps * (2 if mode.at_once else 1))]
            phones = {u: f"+1415557{n:04d}" for n, u in enumerate(burst + otps)}
            for user, phone in phones.items():
                await s.profile(user, phone=phone, timezone="UTC")
                await s.consent(user, "sms", "subscribed")
            events = [
                {"type": "track", "userId": u, "event": "Burst Start", "properties": {"text": u}}
                for u in burst
            ]
            total = mode.runs * mode.texts
            asked: dict[str, float] = {}

            async def ask(users: list[str]) -> list[str]:
                """OTPs for `users`, one second apart; returns their phones."""
                for user in users:
                    asked[phones[user]] = time.monotonic()
                    await s.track(user, "Otp Requested", {"code": user})
                    await asyncio.sleep(1.0)
                return [phones[u] for u in users]

            started = time.monotonic()
            if events:
                await s.call("POST", "/v1/batch", {"batch": events})
            early: list[str] = []
            if mode.at_once:
                await s.wait_runs(burst[-1], timeout=600)
                early = await ask(otps[: args.otps])  # while the journeys queue the burst
                lane = lane_queue(s.settings.task_queue, "twilio", transactional=False)

                async def queued_all() -> bool:  # each delivery done is one submit
                    try:
                        waiting = await backlog_of(server.client, lane)
                    except RPCError:  # a busy dev server may drop a call: ask again
                        return False
                    return waiting + len(peer.submits) >= total * QUEUED

                await eventually(queued_all, timeout=3600, interval=2.0)
                backlog = await backlog_of(server.client, lane)
            else:
                await peer.wait_for_messages(total // 3, within=600)
                backlog = total - len(peer.submits)
            queued = time.monotonic() - started
            late = await ask(otps[len(early) :])

            def all_sent() -> bool:
                return asked.keys() <= {x.to for x in peer.submits}

            # The backlog mode leaves its backlog to the end of the dev server.
            await wait_until(all_sent, within=600, what="OTPs")
            if not mode.at_once:
                await peer.wait_for_messages(total + len(otps), within=600)
        first = {x.to: x.at for x in reversed(peer.submits)}
        marketing = submit_rate([x.at for x in peer.submits if x.to not in asked])
        return {
            "latency": [first[p] - asked[p] for p in late],
            "early": [first[p] - asked[p] for p in early],
            "marketing": marketing,
            "queued": queued,
            "backlog": backlog,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="burst runs (default 30)")
    parser.add_argument("--texts", type=int, default=10, help="SMS per burst run (default 10)")
    parser.add_argument("--tps", type=float, default=5.0, help="provider limit (default 5)")
    parser.add_argument("--otps", type=int, default=5, help="OTPs during the burst (default 5)")
    parser.add_argument(
        "--backlog", type=int, default=50_000, help="SMS queued in the last mode (default 50,000)"
    )
    parser.add_argument(
        "--only", choices=("none", "one", "lanes", "backlog", "apart"), help="run only this mode"
    )
    args = parser.parse_args()
    print(f"load average before: {load_average():.1f}")
    modes = {
        "none": Mode("no burst", True, 0, args.texts),
        "one": Mode("one queue", False, args.runs, args.texts),
        "lanes": Mode("lanes", True, args.runs, args.texts),
        "backlog": Mode(
            f"lanes, {args.backlog:,} queued", True, -(-args.backlog // AT_ONCE), AT_ONCE, True
        ),
        "apart": Mode(
            f"lanes, {args.backlog:,} queued, the burst on a worker process of its own",
            True,
            -(-args.backlog // AT_ONCE),
            AT_ONCE,
            True,
            apart=True,
        ),
    }
    for key, mode in modes.items():
        if args.only not in (None, key):
            continue
        result = asyncio.run(run_mode(mode, args))
        latency, rate, early = result["latency"], result["marketing"], result["early"]
        while_queueing = (
            f"; while queueing p50 {statistics.median(early):.2f} s, max {max(early):.2f} s"
            if early
            else ""
        )
        print(
            f"{mode.name:9}  marketing {rate.count} SMS at "
            f"{rate.mean_per_second:.1f}/s (max {rate.max_per_second} in a second); "
            f"OTP send latency with {result['backlog']:,} queued "
            f"({result['queued']:.0f} s after the burst) p50 {statistics.median(latency):.2f} s, "
            f"max {max(latency):.2f} s{while_queueing}; load average {load_average():.1f}"
        )


if __name__ == "__main__":
    main()
