"""activities.runs: the bookkeeping activities of a run, on a real database. A short run can
end (or convert) before the router that started it has committed its row: the activity then
fails retryably (`RunRowMissing`) until the row is there. As plain coroutines in an activity
context, and as the local activity a journey calls, retried by Temporal on the dev server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.runs import RunActivities
from engine.config.nudge_toml import NudgeConfig
from engine.journey.vocabulary import BOOKKEEPING_RETRY, BOOKKEEPING_TIMEOUT
from engine.store import outbox, runs
from engine.store.users import ensure_user
from schemas.common import RunStatus
from schemas.events import JourneyEvent
from schemas.journeys import GoalReached, RunFinished, RunStarted, UserZoneRequest
from tests.kit import eventually
from tests.kit.db import sessions

Sessions = async_sessionmaker[AsyncSession]
AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Sessions]:
    async with sessions(database_url) as maker:
        yield maker


def bookkeeping(db: Sessions, **config: Any) -> RunActivities:
    return RunActivities(sessions=db, config=NudgeConfig.model_validate(config), version="v9")


async def a_run(db: Sessions, *, zone: str | None = None) -> dict[str, Any]:
    """A user and the row the router would write for their run (not inserted yet)."""
    async with db() as session, session.begin():
        user = await ensure_user(session, external_id=f"ann-{uuid.uuid4()}")
        user.timezone = zone
        message_id = f"e-{uuid.uuid4()}"
        await outbox.add_event(
            session, user_id=user.id, name="Go", message_id=message_id, properties={}, source="t"
        )
        [event] = [e for e in await outbox.claim(session, limit=100) if e.user_id == user.id]
    return {
        "journey": "t_once",
        "user_id": user.id,
        "key": None,
        "workflow_id": f"journey/t_once/{user.id}",
        "run_id": f"run-{uuid.uuid4()}",
        "entry_event_id": event.id,
        "version": "v1",
        "started_at": AT,
    }


async def insert(db: Sessions, row: dict[str, Any]) -> None:
    async with db() as session, session.begin():
        await runs.add_entries(session, [row])


async def the_row(db: Sessions, row: dict[str, Any]) -> Any:
    async with db() as session:
        [found] = await runs.runs_of_user(session, user_id=row["user_id"])
    return found


def finished(row: dict[str, Any]) -> RunFinished:
    return RunFinished(
        workflow_id=row["workflow_id"],
        run_id=row["run_id"],
        status=RunStatus.COMPLETED,
        outcome="done",
        step="sleep",
        at=AT,
    )


async def test_run_finished_retries_until_the_row_exists(db: Sessions) -> None:
    acts = bookkeeping(db)
    row = await a_run(db)
    with pytest.raises(ApplicationError) as missing:
        await ActivityEnvironment().run(acts.run_finished, finished(row))
    assert missing.value.type == "RunRowMissing" and not missing.value.non_retryable
    await insert(db, row)
    await ActivityEnvironment().run(acts.run_finished, finished(row))
    closed = await the_row(db, row)
    assert (closed.status, closed.outcome, closed.step, closed.version) == (
        RunStatus.COMPLETED,
        "done",
        "sleep",
        "v9",  # the code version that finished it
    )


async def test_goal_reached_retries_until_the_row_exists(db: Sessions) -> None:
    acts = bookkeeping(db)
    row = await a_run(db)
    goal = GoalReached(
        workflow_id=row["workflow_id"],
        run_id=row["run_id"],
        journey="t_once",
        user_id=row["user_id"],
        event=JourneyEvent(message_id="g", name="Goal", properties={}, timestamp=AT),
        last_message_id="m_1",
        at=AT,
    )
    with pytest.raises(ApplicationError) as missing:
        await ActivityEnvironment().run(acts.goal_reached, goal)
    assert missing.value.type == "RunRowMissing" and not missing.value.non_retryable
    await insert(db, row)
    await ActivityEnvironment().run(acts.goal_reached, goal)
    converted = await the_row(db, row)
    assert (converted.converted_at, converted.conversion_message_id) == (AT, "m_1")


async def test_run_started_records_the_run_id_of_an_old_style_entry(db: Sessions) -> None:
    acts = bookkeeping(db)
    row = await a_run(db)
    await insert(db, {**row, "run_id": None})
    started = RunStarted(
        workflow_id=row["workflow_id"], run_id="run-late", journey="t_once", user_id=row["user_id"]
    )
    await ActivityEnvironment().run(acts.run_started, started)
    assert (await the_row(db, row)).run_id == "run-late"


async def test_user_zone_is_the_profiles_or_the_configured_default(db: Sessions) -> None:
    acts = bookkeeping(db, timezone="Europe/Paris")
    tokyo = await a_run(db, zone="Asia/Tokyo")
    nowhere = await a_run(db)
    env = ActivityEnvironment()
    assert (await env.run(acts.user_zone, UserZoneRequest(user_id=tokyo["user_id"]))).timezone == (
        "Asia/Tokyo"
    )
    for user_id in (nowhere["user_id"], "u_unknown"):
        zone = await env.run(acts.user_zone, UserZoneRequest(user_id=user_id))
        assert zone.timezone == "Europe/Paris"


# -- as a journey calls it: a local activity, retried by Temporal ---------------------------


class Counting(RunActivities):
    """The real activity, counting the attempts that failed."""

    failures = 0

    @activity.defn(name="nudge.run_finished")
    async def run_finished(self, finished: RunFinished) -> None:
        try:
            await super().run_finished(finished)
        except ApplicationError:
            self.failures += 1
            raise


@workflow.defn(name="t_bookkeeping")
class Bookkeeping:
    """Ends as a journey does: the `nudge.run_finished` local activity, with its retries."""

    @workflow.run
    async def run(self, finished: RunFinished) -> int:
        await workflow.execute_local_activity(
            "nudge.run_finished",
            finished,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        return 0


async def test_a_run_that_ends_before_its_row_is_written_closes_it_once_it_is(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with sessions(postgres_url) as db:
        acts = Counting(sessions=db, config=NudgeConfig(), version="v9")
        row = await a_run(db)
        async with Worker(
            temporal_client,
            task_queue=task_queue,
            workflows=[Bookkeeping],
            activities=[acts.run_finished],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            handle = await temporal_client.start_workflow(
                Bookkeeping.run,
                finished(row),
                id=f"t-bookkeeping-{uuid.uuid4()}",
                task_queue=task_queue,
            )

            async def failed() -> bool:
                return acts.failures >= 1

            await eventually(failed)  # no row yet: the attempt failed, Temporal retries
            await insert(db, row)  # the router commits at last
            assert await handle.result() == 0  # a retry found the row
        assert (await the_row(db, row)).status == RunStatus.COMPLETED
