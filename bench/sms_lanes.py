"""SMS lanes: how long an OTP waits when a marketing burst is queued for the same provider.

`python -m bench.sms_lanes [--runs R] [--texts T] [--tps S] [--otps O]`

Runs the product in-process (`tests.kit.Stack`: API over ASGI, router, worker) against the
Twilio-shaped peer (`tests.peers.twilio`) on Postgres and a Temporal dev server, twice:

- **one queue** (`[sms] lanes = false`): every SMS is a delivery activity on the journeys'
  task queue, paced by the provider's token bucket in the worker (`tps`);
- **lanes** (`[sms] lanes = true`): marketing SMS on the provider's lane, transactional ones
  on its `.tx` lane, each limited by Temporal (`max_task_queue_activities_per_second`).

and, as the baseline, **no burst** (lanes, no marketing SMS: what an OTP costs on this
machine through the whole product). Each burst mode: R runs of `t_burst` queue R x T
marketing SMS at a provider limit of S per second
(below what this machine feeds, so a backlog builds); once a third of them went out, O users
ask for an OTP (`t_otp`, transactional) one second apart. It prints the marketing rate the
peer saw, and the OTP latency from the accepted `/v1/track` to the peer's submit (p50 / max).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from bench._common import POSTGRES_URL, bench_schema, load_average, temporal_server
from engine.app.providers import build_providers
from engine.config.nudge_toml import NudgeConfig
from tests.journeys import TBurst, TOtp
from tests.kit import Stack
from tests.peers.twilio import TwilioPeer, submit_rate


async def run_mode(lanes: bool, runs: int, args: argparse.Namespace) -> dict[str, Any]:
    async with temporal_server() as server, bench_schema() as schema, TwilioPeer() as peer:
        os.environ["NUDGE_TWILIO_AUTH_TOKEN"] = peer.auth_token
        provider = {
            "kind": "twilio",
            "name": "twilio",
            "account_sid": peer.account_sid,
            "endpoint": peer.base_url,
            "from_number": "+15005550006",
            "tps": args.tps,
        }
        config = NudgeConfig.model_validate(
            {
                "sms": {"lanes": lanes, "providers": [provider]},
                "journeys": {"t_burst": {"texts": args.texts}},
            }
        )
        url = f"{POSTGRES_URL}#schema={schema}"
        async with Stack(
            database_url=url,
            client=server.client,
            task_queue=f"bench-{uuid.uuid4().hex[:8]}",
            journeys={"t_burst": TBurst, "t_otp": TOtp},
            config=config,
            providers_factory=build_providers,
        ) as s:
            burst = [f"m{n:03d}" for n in range(runs)]
            otps = [f"o{n:02d}" for n in range(args.otps)]
            for n, user in enumerate(burst + otps):
                await s.profile(user, phone=f"+1415557{n:04d}", timezone="UTC")
                await s.consent(user, "sms", "subscribed")
            events = [
                {"type": "track", "userId": u, "event": "Burst Start", "properties": {"text": u}}
                for u in burst
            ]
            total = runs * args.texts
            if events:
                await s.call("POST", "/v1/batch", {"batch": events})
            await peer.wait_for_messages(total // 3, within=600)
            asked: dict[str, float] = {}
            for n, user in enumerate(otps):
                asked[f"+1415557{runs + n:04d}"] = time.monotonic()
                await s.track(user, "Otp Requested", {"code": f"{n:06d}"})
                await asyncio.sleep(1.0)
            await peer.wait_for_messages(total + args.otps, within=600)
        latency = [
            next(x.at for x in peer.submits if x.to == phone) - at for phone, at in asked.items()
        ]
        marketing = submit_rate([x.at for x in peer.submits if x.to not in asked])
        return {"latency": latency, "marketing": marketing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="burst runs (default 30)")
    parser.add_argument("--texts", type=int, default=10, help="SMS per burst run (default 10)")
    parser.add_argument("--tps", type=float, default=5.0, help="provider limit (default 5)")
    parser.add_argument("--otps", type=int, default=5, help="OTPs during the burst (default 5)")
    args = parser.parse_args()
    print(f"load average before: {load_average():.1f}")
    modes = (("no burst", True, 0), ("one queue", False, args.runs), ("lanes", True, args.runs))
    for name, lanes, runs in modes:
        result = asyncio.run(run_mode(lanes, runs, args))
        latency, rate = result["latency"], result["marketing"]
        print(
            f"{name:9}  marketing {rate.count} SMS at "
            f"{rate.mean_per_second:.1f}/s (max {rate.max_per_second} in a second); "
            f"OTP send latency p50 {statistics.median(latency):.2f} s, "
            f"max {max(latency):.2f} s"
        )


if __name__ == "__main__":
    main()
