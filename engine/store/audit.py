"""The audit log: every admin action (erasure, exports, profile and consent overrides, key
changes), with who did it. Written in the action's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.clock import now
from engine.store.models import AuditEntry


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry. `detail` must hold no personal data (ids and counts only)."""
    session.add(
        AuditEntry(
            at=now(), actor=actor[:120], action=action, target=target, detail=dict(detail or {})
        )
    )


async def recent(session: AsyncSession, *, limit: int = 100) -> list[AuditEntry]:
    return list(
        await session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
    )
