"""`nudge worker` as a real subprocess, so a test can kill it mid-send (SIGKILL) and start
another one on the same database and Temporal."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.client import Client


def worker_env(url: str, client: Client, queue: str, config: Path) -> dict[str, str]:
    """The environment of a `nudge worker` on the test's database, server and queue."""
    base, _, schema = url.partition("#schema=")
    return {
        **os.environ,
        "NUDGE_DATABASE_URL": base,
        "NUDGE_DATABASE_SCHEMA": schema,
        "NUDGE_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "NUDGE_ALLOW_PLAINTEXT": "true",  # the test server's histories are read unencrypted
        "NUDGE_TASK_QUEUE": queue,
        "NUDGE_CONFIG": str(config),
        "NUDGE_LOG_JSON": "true",
    }


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """Start `nudge worker`; its output goes to `log` (appended)."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli.main", "worker", env=env, stdout=out, stderr=out
        )
