"""Users, their devices, consent, journeys; GDPR export and erasure."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import consent, devices, gdpr, runs
from engine.store.consent import opt_in_requested
from engine.store.models import Device, JourneyRun, User
from engine.store.users import apply_profile, ensure_user
from schemas.api import ConsentIn, DeviceIn, ProfileIn
from schemas.common import Channel
from triggers.api.deps import existing_user, session, state
from triggers.api.problems import Problem

router = APIRouter(prefix="/v1/users", tags=["users"])
log = logging.getLogger(__name__)


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.external_id,
        "uid": user.id,
        "timezone": user.timezone,
        "locale": user.locale,
        "phone": user.phone,
        "email": user.email,
        "attributes": user.attributes or {},
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def device_json(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "platform": device.platform,
        "app_id": device.app_id,
        "active": device.active,
        "deactivated_reason": device.deactivated_reason,
        "deactivated_at": device.deactivated_at,
        "created_at": device.created_at,
        "updated_at": device.updated_at,
    }


def run_json(run: JourneyRun) -> dict[str, Any]:
    return {
        "journey": run.journey,
        "workflow_id": run.workflow_id,
        "run_id": run.run_id,
        "key": run.key,
        "status": run.status,
        "outcome": run.outcome,
        "step": run.step,
        "version": run.version,
        "variant": run.variant,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "converted_at": run.converted_at,
        "conversion_message_id": run.conversion_message_id,
    }


def _channel(channel: str) -> Channel:
    try:
        return Channel(channel)
    except ValueError:
        raise Problem(
            404, "unknown-channel", "No such channel", "channel must be sms, push or webpush"
        ) from None


@router.put("/{user_id}")
async def put_user(
    user_id: str, body: ProfileIn, db: AsyncSession = Depends(session)
) -> dict[str, Any]:
    """Create or update a profile: timezone (IANA), locale, phone (E.164), attributes."""
    user = await ensure_user(db, external_id=user_id)
    fields: dict[str, Any] = dict(body.attributes)
    fields.update(
        {
            k: v
            for k, v in body.model_dump(exclude={"attributes"}).items()
            if k in body.model_fields_set
        }
    )
    apply_profile(user, fields)
    await db.commit()
    return user_json(user)


@router.get("/{user_id}")
async def get_user(user_id: str, db: AsyncSession = Depends(session)) -> dict[str, Any]:
    return user_json(await existing_user(db, user_id))


@router.delete("/{user_id}")
async def delete_user(
    user_id: str, request: Request, db: AsyncSession = Depends(session)
) -> dict[str, Any]:
    """GDPR erasure: profile, addresses, events and message bodies go; the consent log stays,
    tied to a salted hash; the user's open runs are ended."""
    user = await existing_user(db, user_id)
    open_runs = [r.workflow_id for r in await runs.open_runs(db, user_id=user.id)]
    await gdpr.erase(db, user=user, salt=state(request).context.settings.erasure_salt_text())
    await db.commit()
    ended = await gdpr.end_runs(state(request).temporal, open_runs)
    return {"erased": True, "runs_ended": ended, "runs_open": len(open_runs) - ended}


@router.get("/{user_id}/export")
async def export_user(user_id: str, db: AsyncSession = Depends(session)) -> dict[str, Any]:
    """Everything held about the user, as JSON."""
    return await gdpr.export(db, user=await existing_user(db, user_id))


@router.post("/{user_id}/devices", status_code=201)
async def add_device(
    user_id: str, body: DeviceIn, db: AsyncSession = Depends(session)
) -> dict[str, Any]:
    """Register a device; a token already known moves to this user."""
    user = await ensure_user(db, external_id=user_id)
    token = str(body.subscription.endpoint) if body.subscription else (body.token or "").strip()
    device = await devices.register(
        db,
        user=user,
        platform=body.platform,
        token=token,
        subscription=body.subscription.model_dump(mode="json") if body.subscription else None,
        app_id=body.app_id,
        locale=body.locale,
        timezone=body.timezone,
    )
    await db.commit()
    return device_json(device)


@router.get("/{user_id}/devices")
async def list_devices(user_id: str, db: AsyncSession = Depends(session)) -> dict[str, Any]:
    user = await existing_user(db, user_id)
    return {
        "items": [device_json(d) for d in await devices.list_devices(db, user_id=user.id)],
        "next": None,
    }


@router.delete("/{user_id}/devices/{device_id}", status_code=204)
async def remove_device(
    user_id: str, device_id: str, db: AsyncSession = Depends(session)
) -> Response:
    user = await existing_user(db, user_id)
    if not await devices.unregister(db, user=user, device_id=device_id):
        raise Problem(404, "device-not-found", "No such device for this user")
    await db.commit()
    return Response(status_code=204)


@router.get("/{user_id}/journeys")
async def list_journeys(user_id: str, db: AsyncSession = Depends(session)) -> dict[str, Any]:
    """The user's journey runs, open and ended, oldest first."""
    user = await existing_user(db, user_id)
    return {
        "items": [run_json(r) for r in await runs.runs_of_user(db, user_id=user.id)],
        "next": None,
    }


def consent_json(entry: Any) -> dict[str, Any]:
    return {
        "channel": entry.channel,
        "topic": entry.topic,
        "state": entry.state,
        "source": entry.source,
        "evidence": entry.evidence,
        "actor": entry.actor,
        "created_at": entry.created_at,
    }


@router.get("/{user_id}/consent/log")
async def consent_log_all(user_id: str, db: AsyncSession = Depends(session)) -> dict[str, Any]:
    user = await existing_user(db, user_id)
    return {
        "items": [consent_json(e) for e in await consent.log(db, user_id=user.id)],
        "next": None,
    }


@router.put("/{user_id}/consent/{channel}")
async def put_consent(
    user_id: str,
    channel: str,
    body: ConsentIn,
    request: Request,
    db: AsyncSession = Depends(session),
) -> dict[str, Any]:
    """Append to the consent log; an opt-out takes effect for every later send at once."""
    kind = _channel(channel)
    user = await ensure_user(db, external_id=user_id)
    entry = await consent.record(
        db,
        user_id=user.id,
        channel=kind.value,
        topic=body.topic,
        state=consent.ConsentState(body.state),
        source=consent.ConsentSource(body.source),
        evidence=body.evidence,
        actor=body.actor,
    )
    if kind is Channel.SMS and body.state == "pending":
        # Double opt-in: the sms_double_opt_in journey texts the confirmation request.
        await opt_in_requested(db, user_id=user.id, topic=body.topic, source=body.source)
    await db.commit()
    router = state(request).router
    if kind is Channel.SMS and body.state == "pending" and router is not None:
        router.wake()
    return consent_json(entry)


@router.get("/{user_id}/consent/{channel}")
async def get_consent(
    user_id: str, channel: str, db: AsyncSession = Depends(session)
) -> dict[str, Any]:
    kind = _channel(channel)
    user = await existing_user(db, user_id)
    current = await consent.states(db, user_id=user.id, channel=kind.value)
    return {"channel": kind.value, "topics": {t: s.value for t, s in current.items()}}


@router.get("/{user_id}/consent/{channel}/log")
async def consent_log(
    user_id: str, channel: str, db: AsyncSession = Depends(session)
) -> dict[str, Any]:
    kind = _channel(channel)
    user = await existing_user(db, user_id)
    entries = await consent.log(db, user_id=user.id, channel=kind.value)
    return {"items": [consent_json(e) for e in entries], "next": None}
