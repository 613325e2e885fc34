"""Nothing lost, nothing sent twice: a worker killed mid-journey, Temporal down while events
arrive. Real processes: `nudge worker` as a subprocess, a second Temporal dev server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from engine.app.dev import start_temporal
from engine.app.worker import build_worker
from engine.channels.registry import Providers
from engine.config.nudge_toml import load_config
from engine.config.settings import Settings
from engine.temporal.client import connect
from tests.harness import Stack, eventually, sent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(url: str, client: Client, queue: str, config: Path) -> dict[str, str]:
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
    out = log.open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli.main", "worker", env=env, stdout=out, stderr=out
    )


async def test_worker_killed_mid_journey_finishes_without_duplicates(
    postgres_url: str, temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    # The last call fires at a wall-clock time a few seconds after the kill and restart.
    last_call = (datetime.now(UTC) + timedelta(seconds=25)).time().replace(microsecond=0)
    config = tmp_path / "nudge.toml"
    config.write_text(
        f'[journeys.abandoned_cart]\nnudge_after = "1s"\nlast_call_at = "{last_call}"\n'
    )
    env = worker_env(postgres_url, temporal_client, task_queue, config)
    log = tmp_path / "worker.log"
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        config=load_config(config),  # the API's router reads the same nudge.toml
        run_worker=False,
    ) as s:
        await s.profile("kai", timezone="UTC", phone="+14155550126")
        await s.device("kai")
        await s.consent("kai", "sms", "subscribed")
        first = await start_worker(env, log)
        try:
            await s.track("kai", "Cart Updated", {"item_count": 1})
            await eventually(lambda: sent(s, "kai", 1), timeout=120)
            first.send_signal(signal.SIGKILL)  # mid-journey: the run sleeps until the last call
            await first.wait()
            second = await start_worker(env, log)
            try:
                runs = await s.wait_closed("kai", timeout=60)
            finally:
                second.terminate()
                await second.wait()
        finally:
            if first.returncode is None:
                first.kill()
        assert runs[0]["outcome"] == "reminded"
        messages = await s.messages("kai")
        assert [(m["step"], m["status"], m["reason"]) for m in messages] == [
            ("cart_reminder", "sent", None),
            ("cart_last_call", "sent", None),
        ]
        printed = [line for line in log.read_text().splitlines() if "[console" in line]
        assert len(printed) == 2, printed  # each message went to the channel exactly once


@pytest.fixture
async def own_temporal(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A Temporal dev server of this test's own, which the test stops and restarts."""
    port, ui = free_port(), free_port()
    state: dict[str, Any] = {"port": port, "ui": ui, "dir": tmp_path}
    state["proc"] = await start_temporal(tmp_path, port=port, ui_port=ui)
    yield state
    proc = state["proc"]
    if proc.returncode is None:
        proc.terminate()
        await proc.wait()


async def test_events_accepted_while_temporal_is_down_reach_their_journeys(
    postgres_url: str, task_queue: str, own_temporal: dict[str, Any]
) -> None:
    settings = Settings(temporal_address=f"127.0.0.1:{own_temporal['port']}")
    from engine.app.dev import wait_for_temporal

    client = await wait_for_temporal(settings, timeout=120)
    async with Stack(
        database_url=postgres_url, client=client, task_queue=task_queue, run_worker=False
    ) as s:
        for user in ("a1", "a2", "a3"):
            await s.device(user)
        await s.track("a1", "Signed Up")
        await eventually(lambda: s.runs("a1"))
        # Temporal goes away; the API keeps answering and storing.
        own_temporal["proc"].send_signal(signal.SIGKILL)
        await own_temporal["proc"].wait()
        for user in ("a2", "a3"):
            response = await s.http.post("/v1/track", json={"userId": user, "event": "Signed Up"})
            assert response.status_code == 200
        await s.track("a1", "Profile Completed")
        await asyncio.sleep(1)
        assert await s.runs("a2") == []
        # Temporal comes back on the same state; a worker starts; nothing is lost.
        own_temporal["proc"] = await start_temporal(
            own_temporal["dir"], port=own_temporal["port"], ui_port=own_temporal["ui"]
        )
        client = await wait_for_temporal(settings, timeout=120)
        fresh = await connect(settings)
        worker = build_worker(
            fresh, s.context, providers=Providers.console(), task_queue=task_queue
        )
        async with worker:
            for user in ("a2", "a3"):
                runs = await eventually(lambda u=user: s.runs(u), timeout=120)  # type: ignore[misc]
                assert runs[0]["journey"] == "onboarding"
            a1 = await s.wait_closed("a1", timeout=120)
            assert a1[0]["status"] == "exited"  # the exit event sent while down arrived
            async with s.context.sessions() as db:
                from sqlalchemy import func, select

                from engine.store.models import Event

                unrouted = await db.scalar(
                    select(func.count()).select_from(Event).where(Event.routed_at.is_(None))
                )
            assert unrouted == 0
