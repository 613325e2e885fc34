"""Shared pieces of the SMS tests: a recorder for the SMPP bridge's callbacks, settings and
message builders, and a stack on the production SMS wiring (`build_providers`) with the
Twilio-shaped peer's provider entry and subscribed users."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import Client

from engine.app.providers import build_providers
from engine.app.worker import ROLES, Role
from engine.channels.base import Address, Content, OutboundMessage
from engine.channels.sms.provider import SmppProvider
from engine.config.nudge_toml import NudgeConfig, SmsChannel
from schemas.common import Channel
from schemas.sms import InboundSms, Receipt
from tests.journeys import TEST_JOURNEYS
from tests.kit.stack import Stack
from tests.kit.waiting import DEADLINE
from tests.peers.twilio import TwilioPeer

PHONE = "+14155550123"
STATUS_URL = "http://127.0.0.1:9/v1/sms/twilio/status"  # nothing listens: recorded only
INBOUND_URL = "https://nudge.example.com/v1/sms/twilio/inbound"
SERVICE_NUMBER = "+15005550006"


@dataclass
class Recorder:
    """Stores what the bridge hands over. `fail_inbound` makes the next N inbound callbacks
    raise; `hold_inbound`, while set to an unset event, keeps each inbound callback waiting
    until the test sets it (so a test can see what happens while a callback runs)."""

    receipts: list[Receipt] = field(default_factory=list)
    inbound: list[InboundSms] = field(default_factory=list)
    fail_inbound: int = 0
    hold_inbound: asyncio.Event | None = None
    holding: int = 0
    """Inbound callbacks waiting on `hold_inbound` right now."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_receipt(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)
        self._changed.set()

    async def on_inbound(self, sms: InboundSms) -> None:
        if self.hold_inbound is not None:
            self.holding += 1
            self._changed.set()
            try:
                await self.hold_inbound.wait()
            finally:
                self.holding -= 1
        if self.fail_inbound:
            self.fail_inbound -= 1
            raise RuntimeError("store unavailable")
        self.inbound.append(sms)
        self._changed.set()

    async def wait(
        self, *, receipts: int = 0, inbound: int = 0, holding: int = 0, within: float = DEADLINE
    ) -> None:
        """Wait until at least this many receipts, inbound messages and held callbacks."""
        async with asyncio.timeout(within):
            while (
                len(self.receipts) < receipts
                or len(self.inbound) < inbound
                or self.holding < holding
            ):
                self._changed.clear()
                await self._changed.wait()


def sms_settings(port: int, **overrides: Any) -> SmsChannel:
    values: dict[str, Any] = {
        "provider": "smpp",
        "host": "127.0.0.1",
        "port": port,
        "tps": 1000,
        # Long enough that a loaded machine never turns a slow answer into a failure; tests
        # of the timeout itself set their own.
        "submit_timeout": timedelta(seconds=30),
    }
    values.update(overrides)
    return SmsChannel(**values)


def make_provider(
    port: int,
    recorder: Recorder,
    *,
    password: str = "pw",
    throttle_retries: int = 3,
    **overrides: Any,
) -> SmppProvider:
    """A provider on 127.0.0.1:`port`; `overrides` are `SmsChannel` fields."""
    return SmppProvider(
        sms_settings(port, **overrides),
        password,
        on_receipt=recorder.on_receipt,
        on_inbound=recorder.on_inbound,
        throttle_retries=throttle_retries,
        throttle_backoff=0.02,
    )


def message(
    text: str, *, message_id: str = "msg-1", attempt: int = 1, phone: str = PHONE
) -> OutboundMessage:
    return OutboundMessage(
        message_id=message_id,
        attempt=attempt,
        address=Address(channel=Channel.SMS, phone=phone),
        content=Content(sms=text),
    )


def smsc_provider(port: int, **extra: Any) -> dict[str, Any]:
    """A `[[sms.providers]]` entry for the in-process SMSC on `port`, first in the route, at
    500 SMS/s; `extra` are more fields."""
    return {
        "kind": "smpp",
        "name": "smsc",
        "port": port,
        "priority": 1,
        "tps": 500,
        "submit_timeout": "5s",
        **extra,
    }


def twilio_provider(peer: TwilioPeer, **extra: Any) -> dict[str, Any]:
    """A `[[sms.providers]]` entry for `peer` at 500 SMS/s; `extra` are more fields."""
    return {
        "kind": "twilio",
        "name": "twilio",
        "account_sid": peer.account_sid,
        "endpoint": peer.base_url,
        "from_number": SERVICE_NUMBER,
        "status_callback": STATUS_URL,
        "inbound_url": INBOUND_URL,
        "tps": 500,
        **extra,
    }


def sms_stack(
    url: str,
    client: Client,
    queue: str,
    providers: list[dict[str, Any]],
    *,
    lanes: bool = True,
    roles: Collection[Role] = ROLES,
    **journeys: Any,
) -> Stack:
    """A `Stack` of the test journeys routing SMS over `providers` (`[sms] lanes` as given),
    its worker serving `roles`; `journeys` are `[journeys.<name>]` settings."""
    config = NudgeConfig.model_validate(
        {"sms": {"lanes": lanes, "providers": providers}, "journeys": journeys}
    )
    return Stack(
        database_url=url,
        client=client,
        task_queue=queue,
        journeys=TEST_JOURNEYS,
        config=config,
        providers_factory=build_providers,
        roles=roles,
    )


async def subscriber(s: Stack, user: str, phone: str) -> None:
    """A user with `phone`, in UTC, subscribed to marketing SMS."""
    await s.profile(user, phone=phone, timezone="UTC")
    await s.consent(user, "sms", "subscribed")
