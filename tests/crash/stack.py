"""The whole product for one target, each part its own process, in a folder of its own.

A private PostgreSQL 15 cluster (initdb into the folder, a free port, `fsync=on`; the shared
server on 5432 is never touched), the Temporal dev server on SQLite in the folder (so a
kill -9 and a restart on the same port keep its state), `nudge api` with its router off,
`nudge router`, `nudge worker`, payloads encrypted with a real key, and the APNs peer in
this process as the provider that counts every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from pydantic import SecretStr
from temporalio.client import Client

from engine.app.dev import start_temporal
from engine.config.settings import Settings
from engine.temporal.client import connect
from engine.temporal.codec import generate_key
from tests.crash.services import Service, free_port, open_log
from tests.kit.processes import start_worker, worker_env
from tests.peers.apns import ApnsPeer

PG_BIN = Path("/usr/lib/postgresql/15/bin")
JOURNEY = "abandoned_cart"
"""The journey driven: `Cart Updated` starts it; with a small cart it sends one push per
device after `nudge_after` and ends `push_only` (no last-call SMS)."""


def nudge_toml(apns: ApnsPeer) -> str:
    """The product's configuration: APNs at the peer, the reminder after one second, and
    the default at-most-once policy for marketing sends whose outcome is unknown."""
    return (
        '[channels.push]\nprovider = "native"\n'
        f'apns = {{ key_file = "{apns.key_file}", key_id = "{apns.key_id}", '
        f'team_id = "{apns.team_id}", topic = "{apns.topic}", '
        f'endpoint = "{apns.endpoint}", ca_file = "{apns.ca_file}", timeout = "10s" }}\n'
        '[delivery.unknown_outcome]\nmarketing = "leave"\n'
        f'[journeys.{JOURNEY}]\nnudge_after = "1s"\n'
    )


async def _postgres_answers(port: int) -> bool:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, user="postgres", database="postgres", timeout=5
    )
    await conn.close()
    return True


def postgres_service(root: Path) -> tuple[Service, int]:
    """A postmaster on a cluster made in `root/pg` (run as the `postgres` user)."""
    port = free_port()
    data, sock = root / "pg", root / "pg-sock"
    log = root / "postgres.log"

    async def spawn() -> asyncio.subprocess.Process:
        fd = open_log(log)
        try:
            return await asyncio.create_subprocess_exec(
                str(PG_BIN / "postgres"),
                *("-D", str(data), "-p", str(port)),
                *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}"),
                *("-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on"),
                *("-c", "max_connections=300", "-c", "log_min_messages=warning"),
                stdout=fd,
                stderr=fd,
                user="postgres",
                start_new_session=True,
            )
        finally:
            os.close(fd)

    return Service("postgres", spawn, lambda: _postgres_answers(port)), port


def _cluster_dirs(root: Path) -> None:
    root.chmod(0o755)  # the `postgres` user must reach its folders
    for sub in ("pg", "pg-sock"):
        (root / sub).mkdir()
        os.chown(root / sub, _postgres_uid(), -1)
    (root / "postgres.log").touch()
    os.chown(root / "postgres.log", _postgres_uid(), -1)


async def init_cluster(root: Path) -> None:
    """initdb into `root/pg`, owned by `postgres` (Postgres refuses to run as root)."""
    _cluster_dirs(root)
    proc = await asyncio.create_subprocess_exec(
        str(PG_BIN / "initdb"),
        *("-D", str(root / "pg"), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        user="postgres",
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"initdb failed: {err.decode(errors='replace')}")


def _postgres_uid() -> int:
    import pwd

    return pwd.getpwnam("postgres").pw_uid


async def _temporal_answers(address: str) -> bool:
    client = await Client.connect(address)
    await client.count_workflows()  # the namespace exists and visibility answers
    return True


async def _api_answers(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"{url}/healthz")).status_code == 200


@dataclass
class Product:
    """Everything one target's run talks to."""

    root: Path
    services: dict[str, Service]
    settings: Settings
    """The processes' view (database, Temporal, payload keys), for the counts."""
    client: Client
    api_url: str
    source_key: str
    admin_key: str
    apns: ApnsPeer
    task_queue: str


async def _cli(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"nudge {' '.join(args)} failed: {err.decode(errors='replace')}")
    return out.decode()


def _nudge(command: str, env: dict[str, str], log: Path) -> Service:
    async def spawn() -> asyncio.subprocess.Process:
        if command == "worker":
            return await start_worker(env, log)  # the kit's `nudge worker` subprocess
        fd = open_log(log)
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "engine.cli.main", command, env=env, stdout=fd, stderr=fd
            )
        finally:
            os.close(fd)

    return Service(command, spawn)


@contextlib.asynccontextmanager
async def product(root: Path) -> AsyncIterator[Product]:
    """Start every part in `root` (an empty folder); stop them all at the end."""
    services: dict[str, Service] = {}
    try:
        async with ApnsPeer() as apns:
            await init_cluster(root)
            services["postgres"], pg_port = postgres_service(root)
            await services["postgres"].start()
            conn = await asyncpg.connect(
                host="127.0.0.1", port=pg_port, user="postgres", database="postgres"
            )
            await conn.execute("CREATE DATABASE nudge")
            await conn.close()
            t_port, ui_port = free_port(), free_port()
            (root / "temporal").mkdir()
            address = f"127.0.0.1:{t_port}"
            services["temporal"] = Service(
                "temporal",
                lambda: start_temporal(root / "temporal", port=t_port, ui_port=ui_port),
                lambda: _temporal_answers(address),
            )
            await services["temporal"].start()
            settings = Settings(
                database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/nudge",
                temporal_address=address,
                encryption_keys=SecretStr(f"crash1:{generate_key()}"),
                task_queue=f"crash-{uuid.uuid4().hex[:8]}",
            )
            client = await connect(settings)
            config = root / "nudge.toml"
            config.write_text(nudge_toml(apns))
            env = worker_env(settings.database_url, client, settings.task_queue, config)
            api_port = free_port()
            keys = settings.encryption_keys
            assert keys is not None
            env.update(
                # Payloads reach Temporal encrypted, as in production.
                NUDGE_ALLOW_PLAINTEXT="false",
                NUDGE_ENCRYPTION_KEYS=keys.get_secret_value(),
                NUDGE_API_ROUTER="false",
                NUDGE_API_PORT=str(api_port),
                NUDGE_BUILD_ID="crash",
            )
            env.pop("NUDGE_DATABASE_SCHEMA", None)
            await _cli(env, "db", "upgrade")
            source = (await _cli(env, "keys", "create", "--scope", "source")).split()[-1]
            admin = (await _cli(env, "keys", "create", "--scope", "admin")).split()[-1]
            api_url = f"http://127.0.0.1:{api_port}"
            for name in ("api", "router", "worker"):
                services[name] = _nudge(name, env, root / f"{name}.log")
            services["api"].ready = lambda: _api_answers(api_url)
            for name in ("api", "router", "worker"):
                await services[name].start()
            yield Product(
                root, services, settings, client, api_url, source, admin, apns, settings.task_queue
            )
    finally:
        for name in ("api", "router", "worker", "temporal", "postgres"):
            if name in services:
                await services[name].stop()
