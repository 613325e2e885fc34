"""Fuzz the whole HTTP API from its own OpenAPI document with schemathesis (`--checks all`),
once with a source key (what an app holds) and once with an admin key: no input may get a
5xx, every answer must match the documented status codes, media types and schemas.

    python -m tests.fuzz_api [--max-examples N] [--seed S] [--phases P,Q] [--only PATH_REGEX]

Run by `.ci/run` after the suite (it takes a few minutes: a few thousand cases). It serves
the real API (uvicorn on 127.0.0.1, a free port) on Postgres (database `test`, a schema of
its own, dropped at the end) and a Temporal dev server of its own. Exits non-zero on any
failure.

Every check runs except two about *requests*, which the API is stricter than a JSON Schema
can say (`positive_data_acceptance`: a phone number `phonenumbers` cannot read, a cursor it
never issued, a zone the database does not know are refused although their shape is valid;
`negative_data_rejection`: Segment's clients send fields the schema does not list, and the
API keeps them), and one about resources: `ensure_resource_availability` expects a device
created for a user to stay that user's, but a push token registered again for another user
moves there with its device (a phone that changed accounts), so the stateful phase, which
reuses tokens, finds it gone by design. Server errors and answers that break the
documented status codes, media types, headers or schemas all fail the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import uvicorn
from sqlalchemy import text

from engine.app.journeys import shipped_journeys
from engine.app.router import build_router
from engine.app.temporal import TemporalConnection
from engine.config.settings import Settings
from engine.context import Context
from engine.store.keys import create_key
from engine.store.migrate import upgrade
from engine.store.session import make_engine
from engine.temporal.client import temporal_binary
from schemas.common import KeyScope
from triggers.api.app import create_app

POSTGRES = os.environ.get(
    "NUDGE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _prepare(schema: str, temporal_address: str) -> tuple[Settings, dict[str, str]]:
    admin = make_engine(POSTGRES)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    await admin.dispose()
    engine = make_engine(POSTGRES, schema=schema)
    await upgrade(engine)
    await engine.dispose()
    settings = Settings(
        database_url=POSTGRES,
        database_schema=schema,
        temporal_address=temporal_address,
        api_router=False,
    )
    async with Context.opened(settings) as context, context.sessions() as db:
        keys = {
            scope.value: await create_key(db, name=f"fuzz-{scope.value}", scope=scope)
            for scope in (KeyScope.SOURCE, KeyScope.ADMIN)
        }
        await db.commit()
    return settings, keys


async def _drop(schema: str) -> None:
    admin = make_engine(POSTGRES)
    async with admin.begin() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    await admin.dispose()


def _serve(settings: Settings, port: int, ready: threading.Event, stop: threading.Event) -> None:
    async def main() -> None:
        async with Context.opened(settings) as context:
            temporal = TemporalConnection(settings)
            router = build_router(context, temporal.get, journeys=shipped_journeys())
            app = create_app(context, temporal=temporal.get, router=router, run_router=False)
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
                await asyncio.sleep(0.05)
            ready.set()
            await asyncio.to_thread(stop.wait)
            server.should_exit = True
            await serving

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--phases",
        default="examples,coverage,fuzzing,stateful",
    )
    parser.add_argument("--only", help="a regular expression: fuzz only the paths it matches")
    args = parser.parse_args()
    schema = f"nudge_fuzz_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    temporal_port = _free_port()
    temporal = subprocess.Popen(
        [
            str(Path(temporal_binary())),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(temporal_port),
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings, keys = asyncio.run(_prepare(schema, f"127.0.0.1:{temporal_port}"))
    port = _free_port()
    ready, stop = threading.Event(), threading.Event()
    server = threading.Thread(target=_serve, args=(settings, port, ready, stop), daemon=True)
    server.start()
    failed = False
    try:
        if not ready.wait(60):
            raise SystemExit("the API did not start")
        cli = Path(sys.executable).parent / "schemathesis"
        for scope, key in keys.items():
            print(f"== schemathesis with a {scope} key", flush=True)
            run = subprocess.run(
                [
                    str(cli),
                    "run",
                    f"http://127.0.0.1:{port}/openapi.json",
                    "--checks",
                    "all",
                    "--exclude-checks",
                    "positive_data_acceptance,negative_data_rejection,ensure_resource_availability",
                    "-H",
                    f"Authorization: Bearer {key}",
                    "--max-examples",
                    str(args.max_examples),
                    "--seed",
                    str(args.seed),
                    "--no-color",
                    # One worker: schemathesis' threads parse lambda sources with `ast` at
                    # once, which Python 3.11 refuses now and then ("AST constructor
                    # recursion depth mismatch"), failing a run on no answer of ours.
                    "--workers",
                    "1",
                    "--phases",
                    args.phases,
                    *(["--include-path-regex", args.only] if args.only else []),
                ],
                check=False,
            )
            failed = failed or run.returncode != 0
    finally:
        stop.set()
        server.join(30)
        temporal.terminate()
        temporal.wait(30)
        asyncio.run(_drop(schema))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
