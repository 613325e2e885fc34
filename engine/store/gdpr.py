"""GDPR: export everything held about a user; erase it, keeping consent evidence provable."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from engine import ids
from engine.clock import now
from engine.store import data_keys, due, locations, runs
from engine.store.models import (
    Consent,
    Device,
    Event,
    JourneyRun,
    Message,
    User,
    WebhookEvent,
)
from schemas.api import GdprExportOut, MessageRecordOut
from schemas.common import MessageStatus, RunStatus

log = logging.getLogger(__name__)


async def export(session: AsyncSession, *, user: User) -> GdprExportOut:
    """Profile, devices, consent log, events, journey runs, messages (with bodies) and the
    last known location."""

    async def rows(model: Any) -> list[Any]:
        # In the order they were written: without ORDER BY the plan decides (an index on
        # events by name once returned them alphabetically).
        order = (model.created_at, model.id) if model in (Device, Message) else (model.id,)
        query = select(model).where(model.user_id == user.id).order_by(*order)
        return list(await session.scalars(query))

    return GdprExportOut(
        user=user,
        devices=await rows(Device),
        consent_log=await rows(Consent),
        events=await rows(Event),
        journey_runs=await rows(JourneyRun),
        messages=[MessageRecordOut.of(m, user_id=user.external_id) for m in await rows(Message)],
        location=await locations.last_location(session, user_id=user.id),
    )


async def erase(session: AsyncSession, *, user: User, salt: str) -> None:
    """Erase profile, addresses, event payloads and message bodies. The consent log stays
    (TCPA/CTIA evidence) with its free-text evidence replaced by a hash, and the user row
    keeps a salted hash of the ids so the evidence stays provable. The caller commits."""
    user.erased_hash = ids.erasure_hash(user.id, user.external_id or "", salt)
    user.external_id = None
    user.anonymous_id = None
    user.timezone = user.locale = user.phone = user.email = None
    user.attributes = {}
    user.erased_at = now()
    user.updated_at = user.erased_at
    # Ids merged into this person (an anonymous visitor, an alias) are theirs too: they no
    # longer lead to the erased row (a later call under one of them is a new user).
    await session.execute(
        update(User)
        .where(User.merged_into == user.id)
        .values(
            external_id=None,
            anonymous_id=None,
            attributes={},
            erased_at=user.erased_at,
            updated_at=user.erased_at,
        )
    )
    for device in await session.scalars(select(Device).where(Device.user_id == user.id)):
        await session.delete(device)
    await session.execute(
        update(Event).where(Event.user_id == user.id).values(properties={}, context={})
    )
    await session.execute(update(Message).where(Message.user_id == user.id).values(body=None))
    # Sends still in flight will find no address; they must not count against caps forever.
    await session.execute(
        update(Message)
        .where(Message.user_id == user.id, Message.status == MessageStatus.PENDING)
        .values(status=MessageStatus.SUPPRESSED, reason="user_erased")
    )
    for entry in await session.scalars(select(Consent).where(Consent.user_id == user.id)):
        if entry.evidence and not entry.evidence.startswith("sha256:"):
            digest = hashlib.sha256(f"{salt}:{entry.evidence}".encode()).hexdigest()
            entry.evidence = f"sha256:{digest}"
    # Webhook events name the user: their payloads go too (deliveries still pending send
    # nothing personal).
    await session.execute(
        update(WebhookEvent).where(WebhookEvent.user_id == user.id).values(payload={})
    )
    # Where they were, and the entries planned from their data.
    await locations.forget(session, user_id=user.id)
    await due.forget(session, user_id=user.id)
    # Crypto-shredding: without the user's salt, nothing Temporal holds about them (inputs,
    # signals, activity payloads, in every history) can be decrypted again.
    await data_keys.shred(session, user_id=user.id)
    for run in await runs.open_runs(session, user_id=user.id):
        await runs.mark_finished(
            session,
            workflow_id=run.workflow_id,
            run_id=None,
            status=RunStatus.TERMINATED,
            outcome="user_erased",
        )


async def end_runs(
    client: Callable[[], Awaitable[Client]], workflow_ids: list[str], *, reason: str = "user erased"
) -> int:
    """Terminate open runs (of an erased or merged user); returns how many were ended."""
    if not workflow_ids:
        return 0
    ended = 0
    try:
        temporal = await client()
    except (RPCError, RuntimeError, OSError):
        log.warning("could not reach Temporal to end %d runs", len(workflow_ids))
        return 0
    for workflow_id in workflow_ids:
        try:
            await temporal.get_workflow_handle(workflow_id).terminate(reason=reason)
            ended += 1
        except RPCError:
            log.warning("could not end run %s", workflow_id)
    return ended
