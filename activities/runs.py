"""Bookkeeping activities of a run: finished, goal reached, the user's zone (local
activities: cheap, on the worker that runs the journey). Every one is idempotent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine import ids
from engine.config.nudge_toml import NudgeConfig
from engine.observability.metrics import JOURNEY_CONVERSIONS, count_end, journey_label
from engine.store import experiments, runs, webhooks
from engine.store.models import User
from schemas.journeys import (
    GoalReached,
    RunFinished,
    RunStarted,
    UserZone,
    UserZoneRequest,
    VariantAssigned,
)


class RunActivities:
    """Keeps `journey_runs` in step with the workflows."""

    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], config: NudgeConfig, version: str
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._version = version

    @contextlib.asynccontextmanager
    async def _run_row(self, *, alone: str | None = None) -> AsyncIterator[AsyncSession]:
        """A transaction on a run's row; one the router has not committed yet is retried.
        `alone`: the webhook kind the work may enqueue; while no endpoint wants it, the
        work's statements need no transaction and each commits as it runs."""
        try:
            async with self._sessions() as session:
                if alone is not None:
                    await webhooks.autocommit_unless_wanted(session, alone)
                yield session
                await session.commit()
        except runs.RunRowMissing:
            raise _not_yet() from None

    @activity.defn(name="nudge.run_started")
    async def run_started(self, started: RunStarted) -> None:
        """Only runs recorded before the router stored run ids call this (their histories
        still schedule it): record the run id on the open row."""
        async with self._sessions() as session, session.begin():
            await runs.mark_started(session, workflow_id=started.workflow_id, run_id=started.run_id)

    @activity.defn(name="nudge.run_finished")
    async def run_finished(self, finished: RunFinished) -> None:
        """Close the run's row with its outcome and the code version that finished it (its
        update, repeated once the router's row is there, commits alone unless a webhook
        records the end with it)."""
        async with self._run_row(alone=runs.ended_kind(finished.status)) as session:
            await runs.mark_finished(
                session,
                workflow_id=finished.workflow_id,
                run_id=finished.run_id,
                status=finished.status,
                outcome=finished.outcome,
                step=finished.step,
                variant=finished.variant,
                version=self._version,
                at=finished.at,
            )
        journey = ids.journey_of_workflow(finished.workflow_id)
        if journey is not None:
            count_end(journey, str(finished.status), finished.outcome)

    @activity.defn(name="nudge.goal_reached")
    async def goal_reached(self, goal: GoalReached) -> None:
        """A conversion, attributed to the last message the run delivered."""
        async with self._run_row() as session:
            await runs.mark_converted(
                session,
                workflow_id=goal.workflow_id,
                run_id=goal.run_id,
                message_id=goal.last_message_id,
                at=goal.at,
            )
        JOURNEY_CONVERSIONS.labels(journey_label(goal.journey)).inc()

    @activity.defn(name="nudge.variant_assigned")
    async def variant_assigned(self, assigned: VariantAssigned) -> None:
        """The run's experiment arm, recorded when `split` assigns it."""
        async with self._run_row() as session:
            await experiments.record_assignment(
                session,
                workflow_id=assigned.workflow_id,
                run_id=assigned.run_id,
                journey=assigned.journey,
                experiment=assigned.experiment,
                variant=assigned.variant,
                arms=assigned.arms,
                holdout=assigned.holdout,
                at=assigned.at,
            )

    @activity.defn(name="nudge.user_zone")
    async def user_zone(self, request: UserZoneRequest) -> UserZone:
        """The user's IANA zone, or the configured default."""
        async with self._sessions() as session:
            user = await session.get(User, request.user_id)
        return UserZone(timezone=(user.timezone if user else None) or self._config.timezone)


def _not_yet() -> ApplicationError:
    # A short run can end before the router that started it has committed the run's row;
    # the retry finds it a moment later.
    return ApplicationError("the run's row is not committed yet", type="RunRowMissing")
