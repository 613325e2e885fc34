"""Bookkeeping activities of a run: started, finished, goal reached, the user's zone."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from engine import runs
from engine.config import NudgeConfig
from engine.db.models import User
from schemas.journeys import GoalReached, RunFinished, RunStarted, UserZone, UserZoneRequest


class RunActivities:
    """Keeps `journey_runs` in step with the workflows. Every method is idempotent."""

    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], config: NudgeConfig, version: str
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._version = version

    @activity.defn(name="nudge.run_started")
    async def run_started(self, started: RunStarted) -> None:
        """Record the run id and the code version that runs it."""
        async with self._sessions() as session, session.begin():
            await runs.mark_started(
                session,
                workflow_id=started.workflow_id,
                run_id=started.run_id,
                version=started.version or self._version,
            )

    @activity.defn(name="nudge.run_finished")
    async def run_finished(self, finished: RunFinished) -> None:
        async with self._sessions() as session, session.begin():
            await runs.mark_finished(
                session,
                workflow_id=finished.workflow_id,
                run_id=finished.run_id,
                status=finished.status,
                outcome=finished.outcome,
                step=finished.step,
                variant=finished.variant,
                at=finished.at,
            )

    @activity.defn(name="nudge.goal_reached")
    async def goal_reached(self, goal: GoalReached) -> None:
        """A conversion, attributed to the last message the run delivered."""
        async with self._sessions() as session, session.begin():
            await runs.mark_converted(
                session,
                workflow_id=goal.workflow_id,
                run_id=goal.run_id,
                message_id=goal.last_message_id,
                at=goal.at,
            )

    @activity.defn(name="nudge.user_zone")
    async def user_zone(self, request: UserZoneRequest) -> UserZone:
        """The user's IANA zone, or the configured default."""
        async with self._sessions() as session:
            user = await session.get(User, request.user_id)
        return UserZone(timezone=(user.timezone if user else None) or self._config.timezone)
