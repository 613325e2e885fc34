"""`python -m tests.crash --journeys 300 --kills 3 [--target worker|router|temporal|postgres|all]`

Prints the matrix (Markdown) and exits 1 if anything accepted was lost, anything was stored,
run or sent twice, or a target's run did not settle in time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from tests.crash.matrix import TARGETS, Options, render, run_matrix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash", description=__doc__)
    parser.add_argument("--journeys", type=int, default=300, help="users, one journey each")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the target per run")
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=3.0, help="users started per second")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds a killed part stays down")
    parser.add_argument("--settle-timeout", type=float, default=1200.0, help="seconds")
    parser.add_argument("--keep", action="store_true", help="keep logs and state of every run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("crash").setLevel(logging.INFO)
    if os.geteuid() != 0:
        parser.error("run as root: the private Postgres cluster runs as the `postgres` user")
    opts = Options(
        journeys=args.journeys,
        kills=args.kills,
        seed=args.seed,
        rate=args.rate,
        pause=args.pause,
        settle_timeout=args.settle_timeout,
        keep=args.keep,
    )
    targets = list(TARGETS) if args.target == "all" else [args.target]
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    outcomes = asyncio.run(run_matrix(targets, opts))
    load_after = os.getloadavg()
    print(f"\ncrash matrix, {started:%Y-%m-%d %H:%M} UTC, {asdict(opts)}")
    print(f"load average before {load_before}, after {load_after}\n")
    print(render(outcomes))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started": started.isoformat(),
                    "options": asdict(opts),
                    "load": [load_before, load_after],
                    "targets": {
                        o.target: {
                            "values": o.tally.values,
                            "lost": o.tally.lost,
                            "duplicates": o.tally.duplicates,
                            "notes": o.tally.notes,
                            "kills": [asdict(k) for k in o.kills],
                            "exits": [asdict(e) for e in o.exits],
                            "unsettled": o.unsettled,
                            "log_errors": o.log_errors,
                        }
                        for o in outcomes
                    },
                },
                indent=2,
                default=str,
            )
        )
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
