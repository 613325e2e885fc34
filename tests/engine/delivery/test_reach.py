"""Where the gate sends a push (engine.delivery.gate.run_gate), on Postgres and SQLite: the
user's active devices of the channel's platforms, newest first, read in the statement that
locks the user; `devices = "newest"` keeps only the first; a user with none is unreachable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.config.nudge_toml import NudgeConfig
from engine.delivery.gate import Reserved, run_gate
from engine.policy.gate import Suppress
from engine.store import devices
from engine.store.users import ensure_user
from schemas.common import Channel, Platform
from schemas.events import JourneyEvent
from schemas.journeys import DeliverRequest
from tests.kit import kit_templates
from tests.kit.db import sessions

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sessions(database_url) as maker:
        yield maker


async def _user(
    db: async_sessionmaker[AsyncSession], platforms: list[Platform]
) -> tuple[str, list[str]]:
    """A user with one device per platform, each registered a minute after the last; the
    last platform's device is then deactivated. Returns the user's id and the device ids."""
    async with db() as session:
        user = await ensure_user(session, external_id=f"reach-{uuid.uuid4()}")
        made = []
        for minute, platform in enumerate(platforms):
            device = await devices.register(
                session, user=user, platform=platform, token=f"tok-{uuid.uuid4()}"
            )
            device.updated_at = AT + timedelta(minutes=minute)
            made.append(device)
        if made:
            await devices.deactivate(session, device=made[-1], reason="test")
        await session.commit()
        return user.id, [device.id for device in made]


def _request(user_id: str, channel: Channel) -> DeliverRequest:
    key = f"reach/{uuid.uuid4()}"
    return DeliverRequest(
        idempotency_key=key,
        user_id=user_id,
        journey="t_keyed",
        workflow_id=key,
        step="keyed",
        template="keyed",
        channel=channel,
        entry_event=JourneyEvent(
            message_id=key, name="Cart Touched", properties={"cart_id": "c"}, timestamp=AT
        ),
    )


async def _gate(
    db: async_sessionmaker[AsyncSession], request: DeliverRequest, config: dict[str, Any]
) -> Any:
    async with db() as session, session.begin():
        decision, _ = await run_gate(
            session,
            request,
            now=AT + timedelta(hours=1),
            config=NudgeConfig.model_validate(config),
            templates=kit_templates(),
            rand=lambda: 0.5,
        )
    return decision


async def test_a_push_reaches_the_active_devices_of_its_platforms_newest_first(
    db: async_sessionmaker[AsyncSession],
) -> None:
    uid, (ios, android, web, _gone) = await _user(
        db, [Platform.IOS, Platform.ANDROID, Platform.WEB, Platform.ANDROID]
    )

    push = await _gate(db, _request(uid, Channel.PUSH), {})
    assert isinstance(push, Reserved)
    assert [address.device_id for _, address in push.rows] == [web, android, ios]

    browsers = await _gate(db, _request(uid, Channel.WEBPUSH), {})
    assert isinstance(browsers, Reserved)
    assert [address.device_id for _, address in browsers.rows] == [web]

    newest = await _gate(
        db, _request(uid, Channel.PUSH), {"channels": {"push": {"devices": "newest"}}}
    )
    assert isinstance(newest, Reserved)
    assert [address.device_id for _, address in newest.rows] == [web]


async def test_a_push_to_a_user_without_an_active_device_is_suppressed(
    db: async_sessionmaker[AsyncSession],
) -> None:
    uid, _ = await _user(db, [Platform.IOS])  # registered, then deactivated
    decision = await _gate(db, _request(uid, Channel.PUSH), {})
    assert isinstance(decision, Suppress)
