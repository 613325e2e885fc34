"""Long runs stay small: a run that receives many events continues as new while it waits,
carrying compact state, and behaves as one run (nothing lost, nothing sent twice)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from engine import Channel, Goal, Journey, JourneyEntry, JourneyResult, JourneySettings, journey
from engine.journey import JourneyState, registry

with workflow.unsafe.imports_passed_through():
    from tests.harness import Stack, eventually, sent

MAX_HISTORY = 120


@journey(
    trigger="Long Start",
    listens=("Tick", "Finish"),
    exit_on=("Long Stop",),
    goal=Goal("Long Goal", within=timedelta(hours=1)),
    name="t_long",
    max_history=MAX_HISTORY,
)
class TLong(Journey[JourneySettings]):
    """A send, a long wait for `Finish` while `Tick`s stream in, a second send."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        one = await self.send("long_one", channel=Channel.PUSH)
        finish = await self.wait_for("Finish", timeout=timedelta(hours=1), where={"ok": True})
        two = await self.send("long_two", channel=Channel.PUSH)
        got = finish.properties["n"] if finish else None
        return self.finish(f"finish={got} one={one.status} two={two.status}")


async def _histories(client: Client, workflow_id: str) -> list[int]:
    """History length of every run of `workflow_id`."""
    lengths = []
    async for run in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
        lengths.append(len(history.events))
    return lengths


async def test_a_chatty_user_continues_as_new_and_nothing_is_lost_or_sent_twice(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=registry([TLong]),
    ) as s:
        await s.device("cal")
        await s.track("cal", "Long Start")
        await eventually(lambda: sent(s, "cal", 1))
        # 400 ticks and a Finish that does not pass the filter, in batches, as an app would.
        for start in range(0, 400, 100):
            batch = [
                {"type": "track", "userId": "cal", "event": "Tick", "properties": {"n": n}}
                for n in range(start, start + 100)
            ]
            await s.call("POST", "/v1/batch", {"batch": batch})
        await s.track("cal", "Finish", {"n": -1, "ok": False})
        await s.track("cal", "Long Goal")
        await s.track("cal", "Finish", {"n": 7, "ok": True})
        [run] = await s.wait_closed("cal", timeout=120)
        assert run["outcome"] == "finish=7 one=sent two=sent"
        assert run["converted_at"] is not None  # the goal, recorded before a continuation
        sends = [m for m in await s.messages("cal") if m["status"] == "sent"]
        assert [m["template"] for m in sends] == ["long_one", "long_two"]
        handle = temporal_client.get_workflow_handle(run["workflow_id"], result_type=JourneyResult)
        lengths = await _histories(temporal_client, run["workflow_id"])
        print("history lengths of the runs:", lengths)
        assert len(lengths) >= 4, lengths  # it continued as new several times
        # Each run ends a little past the limit at most: the step that noticed, the hand-over.
        assert max(lengths) < MAX_HISTORY + 40, lengths
        result = await handle.result()  # follows the chain of continued runs
        assert result.outcome == run["outcome"] and result.sent == 2


async def test_an_exit_after_continuing_ends_the_run_at_once(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=registry([TLong]),
    ) as s:
        await s.device("cy")
        await s.track("cy", "Long Start")
        await eventually(lambda: sent(s, "cy", 1))
        batch = [
            {"type": "track", "userId": "cy", "event": "Tick", "properties": {"n": n}}
            for n in range(150)
        ]
        await s.call("POST", "/v1/batch", {"batch": batch})
        [open_run] = await s.runs("cy")
        handle = s.client.get_workflow_handle(open_run["workflow_id"])

        async def continued() -> JourneyState | None:
            state = await handle.query("state", result_type=JourneyState)
            return state if state.continued >= 1 and state.events_seen >= 150 else None

        await eventually(continued, timeout=60)
        await s.track("cy", "Long Stop")
        [run] = await s.wait_closed("cy", timeout=60)
        assert run["outcome"] == "exited:Long Stop"
        assert [m["template"] for m in await s.messages("cy")] == ["long_one"]
        history = await handle.fetch_history()
        assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
