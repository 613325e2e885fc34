"""Users, their devices, consent, journeys; GDPR export and erasure."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from engine.store import consent, devices, gdpr, runs
from engine.store.consent import opt_in_requested
from engine.store.users import apply_profile, ensure_user
from schemas.api import (
    ConsentEntryOut,
    ConsentIn,
    ConsentStatesOut,
    DeviceIn,
    DeviceOut,
    ErasureOut,
    GdprExportOut,
    Page,
    ProfileIn,
    RunOut,
    UserOut,
)
from schemas.common import Channel, KeyScope
from triggers.api.auth import require
from triggers.api.deps import audit, existing_user, session, state
from triggers.api.problems import Problem, problem_responses

router = APIRouter(prefix="/v1/users", tags=["users"])
log = logging.getLogger(__name__)


def _channel(channel: str) -> Channel:
    try:
        return Channel(channel)
    except ValueError:
        raise Problem(
            404, "unknown-channel", "No such channel", "channel must be sms, push or webpush"
        ) from None


@router.put(
    "/{user_id}",
    dependencies=[Depends(require(KeyScope.ADMIN))],
    responses=problem_responses(413, 422),
)
async def put_user(
    user_id: str, body: ProfileIn, request: Request, db: AsyncSession = Depends(session)
) -> UserOut:
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
    await audit(
        request, db, action="profile.update", target=user.id, detail={"fields": sorted(fields)}
    )
    await db.commit()
    return UserOut.model_validate(user)


@router.get(
    "/{user_id}", dependencies=[Depends(require(KeyScope.READ))], responses=problem_responses(404)
)
async def get_user(user_id: str, db: AsyncSession = Depends(session)) -> UserOut:
    return UserOut.model_validate(await existing_user(db, user_id))


@router.delete(
    "/{user_id}", dependencies=[Depends(require(KeyScope.ADMIN))], responses=problem_responses(404)
)
async def delete_user(
    user_id: str, request: Request, db: AsyncSession = Depends(session)
) -> ErasureOut:
    """GDPR erasure: profile, addresses, events and message bodies go; the consent log stays,
    tied to a salted hash; the user's open runs are ended."""
    user = await existing_user(db, user_id)
    open_runs = [r.workflow_id for r in await runs.open_runs(db, user_id=user.id)]
    await gdpr.erase(db, user=user, salt=state(request).context.settings.erasure_salt_text())
    await audit(
        request, db, action="user.erase", target=user.id, detail={"open_runs": len(open_runs)}
    )
    await db.commit()
    ended = await gdpr.end_runs(state(request).temporal, open_runs)
    return ErasureOut(runs_ended=ended, runs_open=len(open_runs) - ended)


@router.get(
    "/{user_id}/export",
    dependencies=[Depends(require(KeyScope.ADMIN))],
    responses=problem_responses(404),
)
async def export_user(
    user_id: str, request: Request, db: AsyncSession = Depends(session)
) -> GdprExportOut:
    """Everything held about the user, as JSON."""
    user = await existing_user(db, user_id)
    exported = await gdpr.export(db, user=user)
    await audit(request, db, action="user.export", target=user.id)
    await db.commit()
    return exported


@router.post(
    "/{user_id}/devices",
    dependencies=[Depends(require(KeyScope.SOURCE))],
    status_code=201,
    responses=problem_responses(413, 422),
)
async def add_device(
    user_id: str, body: DeviceIn, db: AsyncSession = Depends(session)
) -> DeviceOut:
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
    return DeviceOut.model_validate(device)


@router.get(
    "/{user_id}/devices",
    dependencies=[Depends(require(KeyScope.READ))],
    responses=problem_responses(404),
)
async def list_devices(user_id: str, db: AsyncSession = Depends(session)) -> Page[DeviceOut]:
    user = await existing_user(db, user_id)
    found = await devices.list_devices(db, user_id=user.id)
    return Page[DeviceOut](items=found)


@router.delete(
    "/{user_id}/devices/{device_id}",
    dependencies=[Depends(require(KeyScope.SOURCE))],
    status_code=204,
    responses=problem_responses(404),
)
async def remove_device(
    user_id: str, device_id: str, db: AsyncSession = Depends(session)
) -> Response:
    user = await existing_user(db, user_id)
    if not await devices.unregister(db, user=user, device_id=device_id):
        raise Problem(404, "device-not-found", "No such device for this user")
    await db.commit()
    return Response(status_code=204)


@router.get(
    "/{user_id}/journeys",
    dependencies=[Depends(require(KeyScope.READ))],
    responses=problem_responses(404),
)
async def list_journeys(user_id: str, db: AsyncSession = Depends(session)) -> Page[RunOut]:
    """The user's journey runs, open and ended, oldest first."""
    user = await existing_user(db, user_id)
    found = await runs.runs_of_user(db, user_id=user.id)
    return Page[RunOut](items=found)


@router.get(
    "/{user_id}/consent/log",
    dependencies=[Depends(require(KeyScope.READ))],
    responses=problem_responses(404),
)
async def consent_log_all(
    user_id: str, db: AsyncSession = Depends(session)
) -> Page[ConsentEntryOut]:
    """The user's whole consent log, every channel, oldest first."""
    user = await existing_user(db, user_id)
    entries = await consent.log(db, user_id=user.id)
    return Page[ConsentEntryOut](items=entries)


# 404 for an unknown channel; the body can be too large or not valid.
@router.put(
    "/{user_id}/consent/{channel}",
    dependencies=[Depends(require(KeyScope.ADMIN))],
    responses=problem_responses(404, 413, 422),
)
async def put_consent(
    user_id: str,
    channel: str,
    body: ConsentIn,
    request: Request,
    db: AsyncSession = Depends(session),
) -> ConsentEntryOut:
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
    await audit(
        request,
        db,
        action="consent.set",
        target=user.id,
        detail={"channel": kind.value, "topic": body.topic, "state": body.state},
    )
    await db.commit()
    router = state(request).router
    if kind is Channel.SMS and body.state == "pending" and router is not None:
        router.wake()
    return ConsentEntryOut.model_validate(entry)


@router.get(
    "/{user_id}/consent/{channel}",
    dependencies=[Depends(require(KeyScope.READ))],
    responses=problem_responses(404),
)
async def get_consent(
    user_id: str, channel: str, db: AsyncSession = Depends(session)
) -> ConsentStatesOut:
    """The current state of each topic on the channel (`unknown` where never set)."""
    kind = _channel(channel)
    user = await existing_user(db, user_id)
    current = await consent.states(db, user_id=user.id, channel=kind.value)
    return ConsentStatesOut(channel=kind, topics=current)


@router.get(
    "/{user_id}/consent/{channel}/log",
    dependencies=[Depends(require(KeyScope.READ))],
    responses=problem_responses(404),
)
async def consent_log(
    user_id: str, channel: str, db: AsyncSession = Depends(session)
) -> Page[ConsentEntryOut]:
    """The channel's consent log, oldest first."""
    kind = _channel(channel)
    user = await existing_user(db, user_id)
    entries = await consent.log(db, user_id=user.id, channel=kind.value)
    return Page[ConsentEntryOut](items=entries)
