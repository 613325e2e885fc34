"""The journey contract (DESIGN.md "Semantics that must hold"), on the Temporal dev server,
on Postgres and on SQLite.

Through the HTTP API with `Stack` where the product's own path matters (entry, routing,
exits, goals, message rows); on the time-skipping kit (`journey_env`) where the rule is about
time (re-entry cool-downs, which wait sees which event). A test never sleeps: it waits until
the run's `state` query says it reached a step, then sends what the step waits for.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Replayer, Worker

from engine import JourneyEvent
from engine.app.worker import build_worker
from engine.config.nudge_toml import NudgeConfig
from engine.journey import EVENT_SIGNAL
from engine.journey.split import assign
from engine.testing.pytest_plugin import EnvFactory
from tests.journeys import COOL_DOWN, TEST_JOURNEYS, TCool, TOnce, TSequence
from tests.kit import Stack, eventually, idle, kit_templates, sent
from tests.kit.clock import next_local


def stack(database_url: str, client: Client, task_queue: str, **overrides: Any) -> Stack:
    config = NudgeConfig.model_validate({"journeys": overrides}) if overrides else None
    return Stack(
        database_url=database_url,
        client=client,
        task_queue=task_queue,
        journeys=TEST_JOURNEYS,
        config=config,
    )


# -- entry ----------------------------------------------------------------------------------


async def test_entry_id_and_two_triggers_start_one_run(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue, t_sequence={"wait": "1h"}) as s:
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
        await s.routed("ann@example.com")
        state = await s.wait_step("ann@example.com", "wait:Ping", events_seen=1)
        runs = await s.runs("ann@example.com")
        assert len(runs) == 1
        # The second trigger reached the open run as an ordinary event.
        assert state["journey"] == "t_sequence"
        # The workflow id carries the internal id, never the email address.
        assert runs[0]["workflow_id"] == f"journey/t_sequence/{user['uid']}"
        assert "example.com" not in runs[0]["workflow_id"]
        await s.track("ann@example.com", "Seq Stop")
        await s.wait_closed("ann@example.com")


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


async def test_reentry_once_cooldown_and_always(database_url: str, journey_env: EnvFactory) -> None:
    config = NudgeConfig.model_validate({"journeys": {"t_sequence": {"wait": "0s", "pause": "0s"}}})
    env = await journey_env(
        TOnce,
        TCool,
        TSequence,
        config=config,
        database_url=database_url,
        start_at=next_local("UTC", time(12, 0)),
        templates=kit_templates(),
    )
    # None: once per user, ever. (`emit` returns when the runs handled it: t_once has ended.)
    rex = await env.user("rex")
    await env.emit(rex, "Once Start")
    await env.emit(rex, "Once Start")
    await env.advance(days=30)
    await env.emit(rex, "Once Start")
    assert [r.journey for r in await env.runs(rex)] == ["t_once"]
    # timedelta: a cool-down since the last entry.
    cal = await env.user("cal")
    await env.emit(cal, "Cool Start")
    await env.emit(cal, "Cool Start")
    assert len(await env.runs(cal)) == 1
    await env.advance(COOL_DOWN)
    await env.emit(cal, "Cool Start")
    assert [r.status for r in await env.runs(cal)] == ["completed", "completed"]
    # ALWAYS: every trigger after the previous run ended.
    amy = await env.user("amy")
    await env.emit(amy, "Seq Start")
    await env.emit(amy, "Seq Start")
    runs = await env.runs(amy)
    assert [(r.journey, r.status) for r in runs] == [("t_sequence", "completed")] * 2


# -- wait_for -------------------------------------------------------------------------------


async def test_wait_for_filters_and_sees_events_since_previous_wait(
    database_url: str, journey_env: EnvFactory
) -> None:
    config = NudgeConfig.model_validate({"journeys": {"t_sequence": {"wait": "1h", "pause": "1h"}}})
    env = await journey_env(
        TSequence,
        config=config,
        database_url=database_url,
        start_at=next_local("UTC", time(12, 0)),
        templates=kit_templates(),
    )
    pia = await env.user("pia")
    await env.emit(pia, "Seq Start")
    # Filtered: n=2 does not match the first wait (where n == 1); n=1 does.
    await env.emit(pia, "Ping", {"n": 2})
    await env.emit(pia, "Ping", {"n": 1})
    [one] = await env.sent(pia)
    assert one.template == "seq_one"
    run = await env.run(pia, "t_sequence")
    assert run.state is not None and run.state.step == "sleep"
    # Arrives during the sleep, after the first wait ended: the next wait sees it. (n=2
    # arrived during the first wait, which consumed n=1: no later wait sees it.)
    await env.emit(pia, "Ping", {"n": 3})
    await env.advance(hours=1)
    run = await env.run(pia, "t_sequence")
    assert run.outcome == "first=1 second=3 one=sent two=sent"


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


async def test_an_event_right_after_the_one_ending_a_wait_reaches_the_next_wait(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    """Ping ends the first wait; Pong lands right behind it, while the run is between its
    two steps: the second wait must see it. Here both land in one workflow task (the worker
    is away while they arrive), which a loaded worker does on its own."""
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=TEST_JOURNEYS,
        run_worker=False,
    ) as s:

        def worker() -> Worker:
            return build_worker(
                temporal_client,
                s.context,
                providers=s.providers,
                journeys=s.journeys,
                templates=kit_templates(),
            )

        async with worker():
            await s.track("bea", "Pair Start")
            await s.wait_step("bea", "wait:Ping")
        [run] = await s.runs("bea")
        handle = s.handle(run)
        at = datetime.now(UTC)
        for n, name in enumerate(("Ping", "Pong")):
            event = JourneyEvent(message_id=f"pair-{n}", name=name, properties={}, timestamp=at)
            await handle.signal(EVENT_SIGNAL, event)
        async with worker():

            async def settled() -> dict[str, Any] | None:
                if not await idle(handle):
                    return None
                description = await handle.describe()
                if description.status is not None and description.status.name != "RUNNING":
                    return {"step": "closed"}
                state: dict[str, Any] = await handle.query("state")
                return state if state["events_seen"] == 2 else None

            state = await eventually(settled)
            assert state["step"] != "wait:Pong", "Pong was lost: the run still waits for it"
            [run] = await s.wait_closed("bea")
        assert run["outcome"] == "ping=True pong=True"


async def test_quiz_answer_in_the_batch_of_its_question_ends_the_wait(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    """One `/v1/batch` holds the question's trigger and the answer: the answer reaches the
    run while the question is still being sent, before the wait starts."""
    async with stack(database_url, temporal_client, task_queue) as s:
        await s.device("quinn")
        batch = [
            {"type": "track", "userId": "quinn", "event": name, "properties": properties}
            for name, properties in (("Quiz Start", {}), ("Quiz Answer", {"choice": "b"}))
        ]
        await s.call("POST", "/v1/batch", {"batch": batch})
        [run] = await s.wait_closed("quinn")
        assert run["outcome"] == "question=sent answer=b"


# -- events, exits, goals -------------------------------------------------------------------


async def test_duplicate_deliveries_are_ignored_in_the_run(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue, t_sequence={"wait": "1h"}) as s:
        await s.device("dan")
        await s.track("dan", "Seq Start")
        await s.wait_step("dan", "wait:Ping")
        [run] = await s.runs("dan")
        handle = s.handle(run)
        at = datetime(2026, 1, 1, tzinfo=UTC)
        ping = JourneyEvent(message_id="dup-1", name="Ping", properties={"n": 5}, timestamp=at)
        for _ in range(3):  # the router redelivering after a crash
            await handle.signal(EVENT_SIGNAL, ping)
        # A different event behind them: once the run has seen it, it has handled the three
        # before it (signals are handled in order).
        barrier = ping.model_copy(update={"message_id": "dup-2", "properties": {"n": 6}})
        await handle.signal(EVENT_SIGNAL, barrier)
        state = await s.wait_step("dan", "wait:Ping", events_seen=2)
        assert state["journey"] == "t_sequence"
        await s.track("dan", "Seq Stop")
        await s.wait_closed("dan")


async def test_exit_on_mid_wait_and_mid_sleep_sends_nothing_after(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "1h", "pause": "1h"}
    ) as s:
        await s.device("eve")
        await s.device("fay")
        await s.track("eve", "Seq Start")
        await s.track("fay", "Seq Start")
        await s.wait_step("eve", "wait:Ping")
        await s.track("eve", "Seq Stop")  # mid-wait: nothing was sent
        await s.wait_step("fay", "wait:Ping")
        await s.track("fay", "Ping", {"n": 1})
        await s.wait_step("fay", "sleep")
        await s.track("fay", "Seq Stop")  # mid-sleep: the second message never goes
        eve = await s.wait_closed("eve")
        fay = await s.wait_closed("fay")
        assert eve[0]["status"] == fay[0]["status"] == "exited"
        assert eve[0]["outcome"] == "exited:Seq Stop"
        # The runs are closed: no activity of theirs can still write a message.
        assert await s.messages("eve") == []
        assert [m["step"] for m in await s.messages("fay")] == ["seq_one"]


async def test_goal_is_attributed_to_the_last_delivered_message(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(
        database_url, temporal_client, task_queue, t_sequence={"wait": "0s", "pause": "1h"}
    ) as s:
        await s.device("gus")
        await s.track("gus", "Seq Start")
        first = (await eventually(lambda: sent(s, "gus", 1)))[0]
        await s.wait_step("gus", "sleep")
        await s.track("gus", "Seq Goal")
        await s.track("gus", "Seq Stop")
        runs = await s.wait_closed("gus")
        assert runs[0]["converted_at"] is not None
        assert runs[0]["conversion_message_id"] == first["id"]


async def test_keyed_runs_exit_and_convert_only_on_their_own_key(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue, t_order={"pause": "1h"}) as s:
        await s.device("ora")
        await s.track("ora", "Order Placed", {"order_id": "o1"})
        await s.track("ora", "Order Placed", {"order_id": "o2"})
        await s.wait_step("ora", "sleep", key="o1")
        await s.wait_step("ora", "sleep", key="o2")
        # The exit (and goal) of o2 must not end o1; it arrives mid-sleep, so o2 sends nothing.
        await s.track("ora", "Order Delivered", {"order_id": "o2"})
        await s.wait_closed("ora", count=1)
        await s.skip("ora", timedelta(hours=1), key="o1")  # o1's sleep ends: it sends
        runs = await s.wait_closed("ora", count=2)
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


# -- send and split -------------------------------------------------------------------------


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
        await Replayer(
            workflows=list(TEST_JOURNEYS.values()), data_converter=temporal_client.data_converter
        ).replay_workflow(history)
        assert len(await s.messages("hal")) == 2


async def test_split_is_deterministic_and_holdout_is_measured(
    database_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with stack(database_url, temporal_client, task_queue) as s:
        # Users until both a holdout and an arm are among them (the arm follows from the
        # internal id, which the API assigns).
        arms: dict[str, str] = {}
        while {"holdout"} == set(arms.values()) or "holdout" not in arms.values():
            name = f"split-{len(arms)}"
            uid = (await s.profile(name))["uid"]
            arms[name] = assign("t_split_test", uid, {"a": 1, "b": 1}, holdout=0.3).name
        for user in arms:
            await s.device(user)
            await s.track(user, "Split Start")
            await s.track(user, "Split Goal")
        for user, arm in arms.items():
            [run] = await s.wait_closed(user)
            assert run["variant"] == arm  # (experiment, user) decides, in the run as in pure
            assert run["converted_at"] is not None  # holdouts are measured too
            if arm == "holdout":
                assert run["outcome"] == "holdout:suppressed:holdout"
            else:
                assert run["outcome"] == f"{arm}:sent:None"
        # Same (experiment, user) → same variant on re-entry.
        user = next(iter(arms))
        await s.track(user, "Split Start")
        runs = await s.wait_closed(user, count=2)
        assert runs[1]["variant"] == runs[0]["variant"] == arms[user]
