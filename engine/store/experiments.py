"""Experiments: the arms a journey's `split` declared, and each run's assignment.

`split` records a run's arm when it assigns it (`record_assignment`), so readouts see open
runs too; the experiment's row keeps the arms in declaration order (the first is the
control). Keyword-only functions that never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.store.models import Experiment, JourneyRun
from engine.store.rows import insert_for
from engine.store.runs import RunRowMissing


async def record_assignment(
    session: AsyncSession,
    *,
    workflow_id: str,
    run_id: str,
    journey: str,
    experiment: str,
    variant: str,
    arms: Sequence[str],
    holdout: float,
    at: datetime | None = None,
) -> None:
    """Record the run's experiment and arm (idempotent) and the experiment's arms. Raises
    `RunRowMissing` while the run's row is not committed yet (the router's commit)."""
    stamp = at or now()
    result = await session.execute(
        update(JourneyRun)
        .where(
            JourneyRun.workflow_id == workflow_id,
            (JourneyRun.run_id == run_id) | JourneyRun.run_id.is_(None),
        )
        .values(experiment=experiment, variant=variant)
        .returning(JourneyRun.id)
    )
    if not list(result):
        raise RunRowMissing(workflow_id)
    values = {
        "name": experiment,
        "journey": journey,
        "arms": list(arms),
        "holdout": holdout,
        "created_at": stamp,
        "updated_at": stamp,
    }
    stmt = insert_for(session)(Experiment).values(**values)
    # A deploy that changes the arms changes the row: the newest declaration wins.
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"journey": journey, "arms": list(arms), "holdout": holdout, "updated_at": stamp},
        )
    )


async def get(session: AsyncSession, *, name: str) -> Experiment | None:
    """The experiment's declaration, or None if no run was ever assigned an arm in it."""
    return await session.get(Experiment, name)


async def all_experiments(session: AsyncSession) -> list[Experiment]:
    """Every experiment, by name."""
    return list(await session.scalars(select(Experiment).order_by(Experiment.name)))


__all__ = ["all_experiments", "get", "record_assignment"]
