"""Every line of DESIGN.md "Semantics that must hold", on the Temporal dev server, on
Postgres and on SQLite, through the HTTP API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from engine import JourneyEvent
from engine.config.nudge_toml import NudgeConfig
from engine.journey import EVENT_SIGNAL
from tests.harness import Stack, eventually, sent
from tests.journeys import TEST_JOURNEYS


def stack(database_url: str, client: Client, task_queue: str, **overrides: Any) -> Stack:
    config = NudgeConfig.model_validate({"journeys": overrides}) if overrides else None
    return Stack(
        database_url=database_url,
        client=client,
        task_queue=task_queue,
        journeys=TEST_JOURNEYS,
        config=config,
    )


async def test_entry_id_and_two_triggers_start_one_run(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "1s", "pause": "0s"}
    ) as s:
        user = await s.profile("ann@example.com", timezone="Europe/Paris")
        await s.call(
            "POST",
            "/v1/batch",
            {
                "batch": [
                    {"type": "track", "userId": "ann@example.com", "event": "Seq Start"},
                    {"type": "track", "userId": "ann@example.com", "event": "Seq Start"},
                ]
            },
        )
        runs = await s.wait_closed("ann@example.com")
        await asyncio.sleep(0.5)
        runs = await s.runs("ann@example.com")
        assert len(runs) == 1
        # The workflow id carries the internal id, never the email address.
        assert runs[0]["workflow_id"] == f"journey/t_sequence/{user['uid']}"
        assert "example.com" not in runs[0]["workflow_id"]
        handle = temporal_client.get_workflow_handle(runs[0]["workflow_id"])
        assert (await handle.describe()).status is not None


async def test_keyed_journey_runs_per_key(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue) as s:
        user = await s.profile("kim")
        await s.device("kim")
        await s.track("kim", "Cart Touched", {"cart_id": "c1"})
        await s.track("kim", "Cart Touched", {"cart_id": "c2"})
        runs = await s.wait_closed("kim", count=2)
        assert sorted(r["workflow_id"] for r in runs) == [
            f"journey/t_keyed/{user['uid']}/c1",
            f"journey/t_keyed/{user['uid']}/c2",
        ]
        assert len([m for m in await s.messages("kim") if m["status"] == "sent"]) == 2


async def test_reentry_once_cooldown_and_always(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "0s", "pause": "0s"}
    ) as s:
        # None: once per user, ever.
        await s.track("rex", "Once Start")
        await s.wait_closed("rex")
        await s.track("rex", "Once Start")
        await asyncio.sleep(1.5)
        assert [r["journey"] for r in await s.runs("rex")] == ["t_once"]
        # timedelta: a cool-down since the last entry (4 s).
        await s.track("cal", "Cool Start")
        await s.wait_closed("cal")
        await s.track("cal", "Cool Start")
        await asyncio.sleep(1)
        assert len(await s.runs("cal")) == 1
        await asyncio.sleep(3.5)
        await s.track("cal", "Cool Start")
        await s.wait_closed("cal", count=2)
        # ALWAYS: every trigger after the previous run ended.
        await s.track("amy", "Seq Start")
        await s.wait_closed("amy")
        await s.track("amy", "Seq Start")
        runs = await s.wait_closed("amy", count=2)
        assert len(runs) == 2 and runs[0]["run_id"] != runs[1]["run_id"]


async def test_wait_for_filters_and_sees_events_since_previous_step(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "6s", "pause": "2s"}
    ) as s:
        await s.device("pia")
        await s.track("pia", "Seq Start")
        await asyncio.sleep(0.5)
        # Filtered: n=2 does not match the first wait (where n == 1); n=1 does.
        await s.track("pia", "Ping", {"n": 2})
        await s.track("pia", "Ping", {"n": 1})
        await eventually(lambda: sent(s, "pia", 1))
        # Arrives during the sleep, after the previous wait ended: the next wait sees it
        # (n=2 arrived during the first wait, which consumed n=1: no later wait sees it).
        await s.track("pia", "Ping", {"n": 3})
        await asyncio.sleep(2.5)
        await s.track("pia", "Ping", {"n": 4})
        runs = await s.wait_closed("pia")
        assert runs[0]["outcome"] == "first=1 second=3 one=sent two=sent"


async def test_wait_for_times_out_with_none(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "1s", "pause": "0s"}
    ) as s:
        await s.device("tom")
        await s.track("tom", "Seq Start")
        runs = await s.wait_closed("tom")
        assert runs[0]["outcome"] == "first=None second=None one=sent two=sent"


async def test_event_between_steps_is_not_lost(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue) as s:
        for user in ("bea", "ben", "bo"):
            await s.track(user, "Pair Start")
        await asyncio.sleep(0.5)
        # Ping ends the first wait; Pong lands right behind it (often in the same workflow
        # task), while the run is between its two steps: the second wait must see it.
        for user in ("bea", "ben", "bo"):
            await s.call(
                "POST",
                "/v1/batch",
                {
                    "batch": [
                        {"type": "track", "userId": user, "event": "Ping"},
                        {"type": "track", "userId": user, "event": "Pong"},
                    ]
                },
            )
        for user in ("bea", "ben", "bo"):
            runs = await s.wait_closed(user)
            assert runs[0]["outcome"] == "ping=True pong=True"


async def test_duplicate_deliveries_are_ignored_in_the_run(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "10s", "pause": "0s"}
    ) as s:
        await s.device("dan")
        await s.track("dan", "Seq Start")
        run = (await eventually(lambda: s.runs("dan")))[0]
        handle = temporal_client.get_workflow_handle(run["workflow_id"])
        ping = JourneyEvent(
            message_id="dup-1",
            name="Ping",
            properties={"n": 5},
            timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for _ in range(3):  # the router redelivering after a crash
            await handle.signal(EVENT_SIGNAL, ping)
        state = await eventually(lambda: _state(handle, min_events=1))
        await asyncio.sleep(0.3)
        assert (await handle.query("state"))["events_seen"] == 1
        assert state["journey"] == "t_sequence"
        await s.track("dan", "Seq Stop")
        await s.wait_closed("dan")


async def test_exit_on_mid_wait_and_mid_sleep_sends_nothing_after(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "30s", "pause": "30s"}
    ) as s:
        await s.device("eve")
        await s.device("fay")
        await s.track("eve", "Seq Start")
        await s.track("fay", "Seq Start")
        await asyncio.sleep(0.5)
        await s.track("eve", "Seq Stop")  # mid-wait: nothing was sent
        await s.track("fay", "Ping", {"n": 1})
        await eventually(lambda: sent(s, "fay", 1))
        await s.track("fay", "Seq Stop")  # mid-sleep: the second message never goes
        eve = await s.wait_closed("eve", timeout=5)
        fay = await s.wait_closed("fay", timeout=5)
        assert eve[0]["status"] == fay[0]["status"] == "exited"
        assert eve[0]["outcome"] == "exited:Seq Stop"
        await asyncio.sleep(0.5)
        assert await s.messages("eve") == []
        assert [m["step"] for m in await s.messages("fay")] == ["seq_one"]


async def test_goal_is_attributed_to_the_last_delivered_message(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "0s", "pause": "5s"}
    ) as s:
        await s.device("gus")
        await s.track("gus", "Seq Start")
        first = (await eventually(lambda: sent(s, "gus", 1)))[0]
        await s.track("gus", "Seq Goal")
        await s.track("gus", "Seq Stop")
        runs = await s.wait_closed("gus")
        assert runs[0]["converted_at"] is not None
        assert runs[0]["conversion_message_id"] == first["id"]


async def test_send_result_and_idempotent_message_rows(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "0s", "pause": "0s"}
    ) as s:
        await s.track("hal", "Seq Start")  # no device: both sends suppressed, no_address
        runs = await s.wait_closed("hal")
        assert runs[0]["outcome"] == "first=None second=None one=suppressed two=suppressed"
        messages = await s.messages("hal")
        assert [(m["step"], m["status"], m["reason"]) for m in messages] == [
            ("seq_one", "suppressed", "no_address"),
            ("seq_two", "suppressed", "no_address"),
        ]
        for field in (
            "id",
            "user_id",
            "journey",
            "step",
            "channel",
            "template",
            "status",
            "reason",
            "created_at",
            "sent_at",
        ):
            assert field in messages[0]
        # Replaying the whole history (as a new worker would) must not send again.
        handle = temporal_client.get_workflow_handle(runs[0]["workflow_id"])
        history = await handle.fetch_history()
        from temporalio.worker import Replayer

        await Replayer(
            workflows=list(TEST_JOURNEYS.values()), data_converter=temporal_client.data_converter
        ).replay_workflow(history)
        assert len(await s.messages("hal")) == 2


async def test_split_is_deterministic_and_holdout_is_measured(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue) as s:
        users = [f"split-{i}" for i in range(12)]
        for user in users:
            await s.device(user)
            await s.track(user, "Split Start")
            await s.track(user, "Split Goal")
        outcomes = {}
        for user in users:
            runs = await s.wait_closed(user)
            outcomes[user] = runs[0]
            assert runs[0]["converted_at"] is not None  # holdouts are measured too
        variants = {u: r["outcome"].split(":")[0] for u, r in outcomes.items()}
        assert set(variants.values()) <= {"a", "b", "holdout"}
        assert len(set(variants.values())) >= 2
        for user, run in outcomes.items():
            assert run["variant"] == variants[user]
            if variants[user] == "holdout":
                assert run["outcome"] == "holdout:suppressed:holdout"
        # Same (experiment, user) → same variant on re-entry.
        user = users[0]
        await s.track(user, "Split Start")
        runs = await s.wait_closed(user, count=2)
        assert runs[1]["variant"] == runs[0]["variant"]


async def _state(handle: Any, min_events: int = 0) -> dict[str, Any] | None:
    data: dict[str, Any] = await handle.query("state")
    return data if data["events_seen"] >= min_events else None


async def test_keyed_runs_exit_and_convert_only_on_their_own_key(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue, t_order={"pause": "3s"}) as s:
        await s.device("ora")
        await s.track("ora", "Order Placed", {"order_id": "o1"})
        await s.track("ora", "Order Placed", {"order_id": "o2"})
        await eventually(lambda: _count_runs(s, "ora", 2))
        # The exit (and goal) of o2 must not end o1; it arrives mid-sleep, so o2 sends nothing.
        await s.track("ora", "Order Delivered", {"order_id": "o2"})
        runs = await s.wait_closed("ora", count=2, timeout=20)
        by_key = {r["key"]: r for r in runs}
        assert by_key["o2"]["status"] == "exited" and by_key["o2"]["converted_at"]
        assert by_key["o1"]["outcome"] == "updated" and by_key["o1"]["converted_at"] is None
        assert [m["step"] for m in await s.messages("ora")] == ["order_update"]


async def test_a_goal_after_the_run_ended_still_counts_within_the_window(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "0s", "pause": "0s"}
    ) as s:
        await s.device("ivy")
        await s.track("ivy", "Seq Start")
        runs = await s.wait_closed("ivy")
        assert runs[0]["converted_at"] is None
        await s.track("ivy", "Seq Goal")  # the run is over; the goal window (1 h) is not

        async def converted() -> list[dict[str, Any]] | None:
            rows = await s.runs("ivy")
            return rows if rows[0]["converted_at"] else None

        rows = await eventually(converted)
        last = [m for m in await s.messages("ivy") if m["status"] == "sent"][-1]
        assert rows[0]["conversion_message_id"] == last["id"]


async def _count_runs(s: Stack, user: str, count: int) -> bool:
    return len(await s.runs(user)) >= count
