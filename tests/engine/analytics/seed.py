"""Analytics rows whose counts are worked out by hand (see tests/engine/analytics): six
runs of journey `j` in experiment `exp` (arms a, b), their messages, two conversions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import experiments, outbox
from engine.store.models import JourneyRun, Message
from engine.store.users import ensure_user
from schemas.common import MessageStatus, RunStatus

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

# run: (variant, status, outcome, converted)
RUNS = {
    "r1": ("a", RunStatus.COMPLETED, "reminded", True),
    "r2": ("a", RunStatus.COMPLETED, "reminded", False),
    "r3": ("a", RunStatus.EXITED, "exited:Order Completed", False),
    "r4": ("b", RunStatus.OPEN, None, False),
    "r5": ("b", RunStatus.COMPLETED, "checked_out", True),
    "r6": ("b", RunStatus.TERMINATED, "terminated", False),
}
# message: (run, step, status, reason, minutes after T0, extra)
MESSAGES: list[tuple[str, str, MessageStatus, str | None, int, dict[str, Any]]] = [
    ("r1", "first", MessageStatus.DELIVERED, None, 1, {}),
    ("r1", "first", MessageStatus.SENT, None, 1, {}),  # a second device: still one run
    ("r2", "first", MessageStatus.SENT, None, 1, {"deferrals": 1}),
    ("r3", "first", MessageStatus.SUPPRESSED, "no_consent", 1, {}),
    ("r4", "first", MessageStatus.FAILED, "invalid", 1, {}),
    ("r5", "first", MessageStatus.DELIVERED, None, 1, {"clicked_at": T0}),
    ("r1", "second", MessageStatus.SENT, None, 30, {}),
    ("r2", "second", MessageStatus.SUPPRESSED, "capped", 30, {}),
]


async def _run(session: AsyncSession, journey: str, run_id: str, started: datetime) -> JourneyRun:
    user = await ensure_user(session, external_id=f"u-{uuid.uuid4()}")
    await outbox.add_event(
        session, user_id=user.id, name="Go", message_id=run_id, properties={}, source="test"
    )
    event = next(e for e in await outbox.claim(session, limit=100) if e.message_id == run_id)
    row = JourneyRun(
        journey=journey,
        user_id=user.id,
        workflow_id=f"journey/{journey}/{user.id}",
        run_id=run_id,
        entry_event_id=event.id,
        status=RunStatus.OPEN,
        version="v1",
        started_at=started,
    )
    session.add(row)
    await session.flush()
    return row


async def seed(session: AsyncSession) -> None:
    """The rows of `RUNS` and `MESSAGES`, one run before `T0`, one of another journey."""
    runs = {}
    for n, (run_id, (variant, status, outcome, _)) in enumerate(RUNS.items()):
        row = await _run(session, "j", run_id, T0 + timedelta(minutes=n))
        await experiments.record_assignment(
            session,
            workflow_id=row.workflow_id,
            run_id=run_id,
            journey="j",
            experiment="exp",
            variant=variant,
            arms=["a", "b"],
            holdout=0.0,
            at=T0,
        )
        row.status, row.outcome = status, outcome
        runs[run_id] = row
    await _run(session, "j", "old", T0 - timedelta(days=1))  # before the range
    await _run(session, "other", "x1", T0)
    for n, (run_id, step, state, reason, minutes, extra) in enumerate(MESSAGES):
        run = runs[run_id]
        at = T0 + timedelta(minutes=minutes)
        session.add(
            Message(
                id=f"m{n}",
                idempotency_key=f"{run_id}/{step}/{n}",
                user_id=run.user_id,
                journey="j",
                workflow_id=run.workflow_id,
                run_id=run_id,
                step=step,
                template=f"tpl_{step}",
                channel="push",
                status=state,
                reason=reason,
                created_at=at,
                updated_at=at,
                **extra,
            )
        )
    # Conversions: r1 on its second message (m6), r5 on its only one (m5).
    for run_id, message_id in (("r1", "m6"), ("r5", "m5")):
        runs[run_id].converted_at = T0 + timedelta(hours=1)
        runs[run_id].conversion_message_id = message_id
