"""Broadcasts end to end: the segments API, `POST /v1/broadcasts` through the entry
workflow into a shipped journey, and a broadcast to 1,000 users (10,000 with
`NUDGE_TEST_BROADCAST_MEMBERS=10000`) whose `nudge worker` is killed mid-way that still
enters each user exactly once (with the memo check in `activities/broadcasts.py`
switched off, this test finds users entered twice)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from temporalio.client import Client

from engine.app.journeys import shipped_journeys
from engine.config.nudge_toml import load_config
from engine.store.models import JourneyRun, User
from engine.store.users import ensure_users
from engine.temporal import broadcasts as starting
from tests.kit import Stack, eventually
from tests.kit.processes import start_worker, worker_env

CONFIG = """
[segments]
pro = 'plan == "pro"'
lapsed = 'plan == "pro" and not did("App Opened", within="14d")'

[journeys.win_back]
second_offer_after = "1s"
"""


async def people(s: Stack, prefix: str, count: int, **attributes: Any) -> list[str]:
    """`count` users with `attributes`, straight into the database (internal ids)."""
    async with s.context.sessions() as db, db.begin():
        found = await ensure_users(db, [f"{prefix}-{n:05d}" for n in range(count)])
        await db.execute(
            update(User).where(User.id.in_(found.values())).values(attributes=attributes)
        )
    return sorted(found.values())


async def finished(s: Stack, broadcast_id: str, timeout: float = 120) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        row: dict[str, Any] = await s.call("GET", f"/v1/broadcasts/{broadcast_id}")
        return row if row["status"] == "completed" else None

    return await eventually(done, timeout=timeout)


def _stack(
    postgres_url: str,
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    config: str,
    *,
    run_worker: bool = True,
) -> Stack:
    """A stack of the shipped journeys with `config` as its nudge.toml."""
    (tmp_path / "nudge.toml").write_text(config)
    return Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=shipped_journeys(),
        config=load_config(tmp_path / "nudge.toml"),
        run_worker=run_worker,
    )


async def test_segments_api_and_a_broadcast_enter_members_once(
    postgres_url: str, temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    async with _stack(postgres_url, temporal_client, task_queue, tmp_path, CONFIG) as s:
        await s.profile("ann", attributes={"plan": "pro"})
        await s.profile("bob", attributes={"plan": "pro"})
        await s.profile("cat", attributes={"plan": "free"})
        await s.track("bob", "App Opened")
        await s.routed("bob")
        listed = await s.call("GET", "/v1/segments")
        # The config's, and any declared in code by modules imported so far (by name).
        names = [i["name"] for i in listed["items"]]
        assert names == sorted(names) and {"lapsed", "pro"} <= set(names)
        [pro] = [i for i in listed["items"] if i["name"] == "pro"]
        assert pro == {
            "name": "pro",
            "expression": 'plan == "pro"',
            "description": None,
            "source": "nudge.toml [segments] pro",
        }
        lapsed = await s.call("GET", "/v1/segments/lapsed")
        assert lapsed["size"] == 1 and [m["user_id"] for m in lapsed["sample"]] == ["ann"]
        missing = await s.http.get("/v1/segments/nobody")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        for bad, field in (
            ({"journey": "nope", "segment": "pro"}, "journey"),
            ({"journey": "win_back", "segment": "nope"}, "segment"),
            ({"journey": "win_back", "segment": "pro", "local": True}, "at"),
            (
                {
                    "journey": "win_back",
                    "segment": "pro",
                    "at": "2030-01-01T09:00+01:00",
                    "local": True,
                },
                "at",
            ),
        ):
            refused = await s.http.post("/v1/broadcasts", json=bad)
            assert refused.status_code == 400, refused.text
            assert refused.json()["errors"][0]["field"] == field

        first = await s.call("POST", "/v1/broadcasts", {"journey": "win_back", "segment": "pro"})
        assert first["status"] in ("scheduled", "running", "completed")
        done = await finished(s, first["id"])
        assert (done["total"], done["entered"], done["skipped"]) == (2, 2, 0)
        await s.wait_closed("ann")
        await s.wait_closed("bob")
        [ann_run] = await s.runs("ann")
        assert ann_run["journey"] == "win_back" and ann_run["outcome"] == "offered"
        timeline = await s.call("GET", "/v1/users/ann/export")
        assert [e["name"] for e in timeline["events"]] == ["Broadcast"]

        # win_back's 30-day re-entry holds for broadcasts too: a second one skips them all.
        second = await s.call("POST", "/v1/broadcasts", {"journey": "win_back", "segment": "pro"})
        done = await finished(s, second["id"])
        assert (done["entered"], done["skipped"]) == (0, 2)
        assert len(await s.runs("ann")) == 1

        # A segment the worker does not know (the API refuses it; a stale caller may not).
        stale = await starting.start(
            temporal_client,
            s.context.sessions,
            starting.request_for(
                journey="win_back",
                segment="gone",
                at=None,
                local=False,
                rate=None,
                default_zone="UTC",
            ),
            task_queue=task_queue,
        )

        async def failed() -> bool:
            row = await s.call("GET", f"/v1/broadcasts/{stale}")
            return bool(row["status"] == "failed")

        await eventually(failed)


async def test_a_broadcast_to_a_place_enters_only_the_users_last_seen_near_it(
    postgres_url: str, temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Locations come in as events; the router keeps each user's last one, and `near(...)`
    reads it, for the segment's size and sample and for the broadcast's pages."""
    berlin = CONFIG.replace("[segments]\n", "[segments]\nberlin = 'near(52.52, 13.405, km=5)'\n")
    async with _stack(postgres_url, temporal_client, task_queue, tmp_path, berlin) as s:
        gate, potsdam, munich = (52.5163, 13.3777), (52.3906, 13.0645), (48.1374, 11.5755)
        await s.track("eva", "Location Updated", {"latitude": gate[0], "longitude": gate[1]})
        # Segment's spec puts a location in context.location; the router reads both.
        near = {"location": {"latitude": 52.5450, "longitude": 13.4200}}  # ~3 km
        await s.track("finn", "App Opened", context=near)
        await s.track("gus", "Location Updated", {"latitude": potsdam[0], "longitude": potsdam[1]})
        # lea was in Berlin, then in Munich: her last location is what counts.
        await s.track("lea", "Location Updated", {"latitude": gate[0], "longitude": gate[1]})
        await s.track("lea", "Location Updated", {"latitude": munich[0], "longitude": munich[1]})
        await s.profile("kim", attributes={"plan": "pro"})  # never located
        for user in ("eva", "finn", "gus", "lea"):
            await s.routed(user)

        shown = await s.call("GET", "/v1/segments/berlin")
        assert shown["expression"] == "near(52.52, 13.405, km=5)"
        assert shown["size"] == 2
        assert {m["user_id"] for m in shown["sample"]} == {"eva", "finn"}

        started = await s.call(
            "POST", "/v1/broadcasts", {"journey": "win_back", "segment": "berlin"}
        )
        done = await finished(s, started["id"])
        assert (done["total"], done["entered"], done["skipped"]) == (2, 2, 0)
        for user in ("eva", "finn"):
            [run] = await s.wait_closed(user)
            assert run["journey"] == "win_back"
        for user in ("gus", "lea", "kim"):
            assert await s.runs(user) == []


MEMBERS = int(os.environ.get("NUDGE_TEST_BROADCAST_MEMBERS", "1000"))
"""The audience of the kill test: 1,000 in the suite (10,000 take ~17 min here);
`NUDGE_TEST_BROADCAST_MEMBERS=10000` runs the issue's 10,000 (passed: 1,000 s, load ~10)."""


async def test_a_broadcast_survives_a_worker_kill_and_enters_each_member_exactly_once(
    postgres_url: str, temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    """The worker dies while a page is half entered: some members have a run but no row.
    Their runs are then ended (as if they had finished), so only the broadcast's own
    check in Temporal (the run's memo) can tell it already entered them."""
    config = CONFIG.replace('"1s"', '"1d"')  # runs wait: the worker stays light
    async with _stack(
        postgres_url, temporal_client, task_queue, tmp_path, config, run_worker=False
    ) as s:
        env = worker_env(postgres_url, temporal_client, task_queue, tmp_path / "nudge.toml")
        log = tmp_path / "worker.log"
        query = f"NudgeJourney = 'win_back' AND TaskQueue = '{task_queue}'"
        members = await people(s, "pro", MEMBERS, plan="pro")
        await people(s, "free", 50, plan="free")

        async def rows() -> int:
            async with s.context.sessions() as db:
                return int(await db.scalar(select(func.count()).select_from(JourneyRun)) or 0)

        async def mid_page() -> bool:
            recorded = await rows()
            started = (await temporal_client.count_workflows(query)).count
            # Two pages recorded: the server's last heartbeat (throttled) may be a page behind.
            return 400 <= recorded < started

        first = await start_worker(env, log)
        second = None
        try:
            started = await s.call(
                "POST", "/v1/broadcasts", {"journey": "win_back", "segment": "pro", "rate": 100}
            )
            await eventually(mid_page, timeout=120, interval=0.05)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            ended = 0
            async for execution in temporal_client.list_workflows(
                f"{query} AND ExecutionStatus = 'Running'"
            ):
                await temporal_client.get_workflow_handle(execution.id).terminate("test")
                ended += 1
            assert ended > await rows(), "no member was entered without its row"
            second = await start_worker(env, log)

            async def entered() -> dict[str, Any] | None:
                row: dict[str, Any] = await s.call("GET", f"/v1/broadcasts/{started['id']}")
                return row if row["entered"] + row["skipped"] >= MEMBERS else None

            # ~25 entries/s on this shared 2-core box (bench/README.md): a deadline, not a wait.
            done = await eventually(entered, timeout=MEMBERS / 5)
        finally:
            for worker in (first, second):
                if worker is not None and worker.returncode is None:
                    worker.terminate()
                    await worker.wait()
        assert (done["total"], done["entered"], done["skipped"]) == (MEMBERS, MEMBERS, 0)
        async with s.context.sessions() as db:
            entries = Counter(await db.scalars(select(JourneyRun.user_id)))
        assert set(entries) == set(members) and set(entries.values()) == {1}
        # Temporal agrees: one run per member's workflow id, never a second entry.
        runs: Counter[str] = Counter()
        async for execution in temporal_client.list_workflows(query):
            runs[execution.id] += 1
        assert len(runs) == len(members) and set(runs.values()) == {1}
        await _terminate_all(temporal_client, task_queue)


async def _terminate_all(client: Client, task_queue: str) -> None:
    """End what the test left running on its queue (no worker polls it any more), so the
    session's server does not carry thousands of pending runs into later tests."""
    running = [
        execution.id
        async for execution in client.list_workflows(
            f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
        )
    ]
    for start in range(0, len(running), 100):
        await asyncio.gather(
            *(
                client.get_workflow_handle(workflow_id).terminate("test over")
                for workflow_id in running[start : start + 100]
            )
        )
