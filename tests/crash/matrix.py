"""One target's run (load through the API, `kills` SIGKILLs of the target spread over it,
then the wait until everything settled and the counts), and the matrix of targets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.store.session import make_engine, make_sessionmaker
from tests.crash.load import Driver, plans
from tests.crash.services import Exit, Supervisor
from tests.crash.stack import product
from tests.crash.tally import Snapshot, Tally, count, executions, settle

log = logging.getLogger("crash")

TARGETS = ("worker", "router", "temporal", "postgres")


@dataclass
class Kill:
    """One SIGKILL: seconds after the load began, users started by then, seconds down."""

    at: float
    users_started: int
    down: float


@dataclass
class Outcome:
    target: str
    tally: Tally
    kills: list[Kill]
    exits: list[Exit]
    unsettled: dict[str, int]
    load_seconds: float
    wall_seconds: float
    log_errors: dict[str, int] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def failed(self) -> bool:
        return bool(self.tally.lost or self.tally.duplicates or self.unsettled)


def kill_points(journeys: int, kills: int) -> list[int]:
    """Users started before each kill: spread from 20% to 80% of the load (50% for one)."""
    if kills <= 0:
        return []
    if kills == 1:
        return [math.ceil(journeys * 0.5)]
    return [math.ceil(journeys * (0.2 + 0.6 * i / (kills - 1))) for i in range(kills)]


def _log_errors(folder: Path) -> dict[str, int]:
    """Error-level lines per process log (JSON logs of the nudge processes)."""
    found = {}
    for name in ("api", "router", "worker"):
        path = folder / f"{name}.log"
        if path.exists():
            text = path.read_text(errors="replace")
            found[name] = len(re.findall(r'"level": ?"(?:error|critical)"', text, re.I))
    return found


@dataclass(frozen=True)
class Options:
    journeys: int = 300
    kills: int = 3
    seed: int = 1
    rate: float = 3.0
    """Users started per second."""
    pause: float = 3.0
    """Seconds a killed target stays down before it is started again."""
    settle_timeout: float = 1200.0
    keep: bool = False


async def run_target(target: str, opts: Options) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix=f"nudge-crash-{target}-"))
    log.info("[%s] starting the product in %s", target, folder)
    async with product(folder) as p:
        driver = Driver(
            p.api_url, p.source_key, plans(opts.journeys, seed=opts.seed), rate=opts.rate
        )
        victim = p.services[target]
        done: list[Kill] = []
        with Supervisor(list(p.services.values())) as supervisor:
            begin = time.monotonic()
            load = asyncio.create_task(driver.run())
            for point in kill_points(opts.journeys, opts.kills):
                await driver.when_started(point).wait()
                at = time.monotonic()
                log.info("[%s] kill -9 after %d users (%.0fs)", target, driver.started, at - begin)
                await victim.kill()
                await asyncio.sleep(opts.pause)
                await victim.start()
                done.append(Kill(at - begin, driver.started, time.monotonic() - at))
                log.info("[%s] back after %.1fs", target, done[-1].down)
            await load
            loaded = time.monotonic() - begin
            log.info("[%s] load sent in %.0fs; waiting until it settles", target, loaded)
            engine = make_engine(p.settings.database_url)
            try:
                sessions = make_sessionmaker(engine)
                unsettled = await settle(sessions, p.client, driver, timeout=opts.settle_timeout)
                wall = time.monotonic() - begin
                tally = count(
                    await Snapshot.read(sessions), driver, p.apns, await executions(p.client)
                )
            finally:
                await engine.dispose()
            exits = supervisor.exits
    outcome = Outcome(target, tally, done, exits, unsettled, loaded, wall, _log_errors(folder))
    if opts.keep or outcome.failed:
        outcome.folder = folder  # logs and state, for a post-mortem
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return outcome


def render(outcomes: list[Outcome]) -> str:
    """The matrix as a Markdown table (metrics down, targets across), then the notes."""
    heads = [o.target for o in outcomes]
    lines = ["| metric | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]

    def row(name: str, cells: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    for name in outcomes[0].tally.values:
        row(name, [str(o.tally.values[name]) for o in outcomes])
    row(
        "kills (s into load: down s)",
        [", ".join(f"{k.at:.0f}:{k.down:.1f}" for k in o.kills) or "-" for o in outcomes],
    )
    row("processes that exited on their own", [_exits(o.exits) for o in outcomes])
    row(
        "error lines in logs (api/router/worker)",
        [
            "/".join(str(o.log_errors.get(n, 0)) for n in ("api", "router", "worker"))
            for o in outcomes
        ],
    )
    row("settled", ["yes" if not o.unsettled else f"NO: {o.unsettled}" for o in outcomes])
    row(
        "load sent in / settled after (s)",
        [f"{o.load_seconds:.0f} / {o.wall_seconds:.0f}" for o in outcomes],
    )
    row("LOST / DUPLICATES", [f"{o.tally.lost} / {o.tally.duplicates}" for o in outcomes])
    for o in outcomes:
        for note in o.tally.notes[:20]:
            lines.append(f"- {o.target}: {note}")
        if o.folder is not None:
            lines.append(f"- {o.target}: logs and state kept in {o.folder}")
    return "\n".join(lines)


def _exits(exits: list[Exit]) -> str:
    counts = Counter(f"{e.service}(rc={e.code})" for e in exits)
    return " ".join(f"{k}x{n}" for k, n in counts.items()) or "none"


async def run_matrix(targets: list[str], opts: Options) -> list[Outcome]:
    """Each target in turn, each on a product (database, Temporal, processes) of its own."""
    outcomes = []
    for target in targets:
        outcomes.append(await run_target(target, opts))
        with contextlib.suppress(OSError):
            log.info("load average now %s", os.getloadavg())
    return outcomes
