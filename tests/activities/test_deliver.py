"""activities.deliver: the delivery activity on a real database (Postgres and SQLite), run as
a plain coroutine in Temporal's activity context (`ActivityEnvironment`), with a scripted
provider. A first attempt runs the gate at once; a retry first reads what earlier attempts
wrote: a final row is answered from the table, a `pending` one is delivered again. Each
provider call is one row of `message_attempts`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deliver import DeliveryActivities
from engine import ids
from engine.channels.base import (
    ChannelProvider,
    OutboundMessage,
    ProviderResult,
    RetryableError,
    ThrottledError,
)
from engine.channels.registry import Providers
from engine.channels.sms.route import RouteEntry, SmsRoute
from engine.config.nudge_toml import NudgeConfig
from engine.delivery import Deliverer
from engine.store import devices
from engine.store.models import Message, MessageAttempt
from engine.store.users import ensure_user
from schemas.common import Channel, Platform, SendStatus
from schemas.events import JourneyEvent
from schemas.journeys import DeliverOutcome, DeliverRequest
from tests.kit import kit_templates
from tests.kit.db import sessions

Sessions = async_sessionmaker[AsyncSession]


class Scripted(ChannelProvider):
    """Answers each call with the next scripted outcome ("ok", "retry", "throttle")."""

    name = "scripted"

    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> ProviderResult:
        self.calls.append(message)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "retry":
            raise RetryableError("Unavailable")
        if outcome == "throttle":
            raise ThrottledError("TooManyRequests", retry_after=7)
        return ProviderResult(provider=self.name, provider_id=f"p-{len(self.calls)}")


class Recording(Deliverer):
    """The real deliverer, noting what the activity told it about the attempt."""

    first_attempts: list[bool]

    async def deliver(
        self, request: DeliverRequest, *, first_attempt: bool = True
    ) -> DeliverOutcome:
        self.first_attempts.append(first_attempt)
        return await super().deliver(request, first_attempt=first_attempt)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Sessions]:
    async with sessions(database_url) as maker:
        yield maker


def activities(db: Sessions, provider: Scripted) -> tuple[DeliveryActivities, Recording]:
    deliverer = Recording(
        sessions=db,
        config=NudgeConfig(),
        providers=Providers({(Channel.PUSH, Platform.IOS): provider}),
        templates=kit_templates(),
    )
    deliverer.first_attempts = []
    return DeliveryActivities(deliverer), deliverer


async def request_for_a_user_with_a_device(db: Sessions) -> DeliverRequest:
    """A push send of `t_keyed` for a new user with one iOS device (so push is allowed)."""
    async with db() as session, session.begin():
        user = await ensure_user(session, external_id=f"ann-{uuid.uuid4()}")
        await devices.register(session, user=user, platform=Platform.IOS, token=f"tok-{user.id}")
    return send_request(
        user.id, "t_keyed", "keyed", Channel.PUSH, "Cart Touched", {"cart_id": "c1"}, key="c1"
    )


def send_request(
    user_id: str,
    journey: str,
    step: str,
    channel: Channel,
    event: str,
    properties: dict[str, str],
    *,
    key: str | None = None,
    transactional: bool = False,
) -> DeliverRequest:
    """The send `step` (its template of the same name) of a run of `journey` entered by
    `event`."""
    workflow_id = ids.journey_workflow_id(journey, user_id, key)
    return DeliverRequest(
        idempotency_key=ids.send_idempotency_key(workflow_id, f"run-{uuid.uuid4()}", step),
        user_id=user_id,
        journey=journey,
        workflow_id=workflow_id,
        step=step,
        template=step,
        channel=channel,
        transactional=transactional,
        entry_event=JourneyEvent(
            message_id=f"e-{uuid.uuid4()}",
            name=event,
            properties=properties,
            timestamp=datetime.now(UTC),
        ),
    )


def attempt(number: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=number)
    return env


async def rows(db: Sessions, request: DeliverRequest) -> list[tuple[str, int, list[str]]]:
    """(status, attempts, outcome of each recorded attempt) per message row of the send."""
    async with db() as session:
        messages = list(
            await session.scalars(select(Message).where(Message.workflow_id == request.workflow_id))
        )
        found = []
        for message in messages:
            outcomes = await session.scalars(
                select(MessageAttempt.outcome)
                .where(MessageAttempt.message_id == message.id)
                .order_by(MessageAttempt.attempt)
            )
            found.append((str(message.status), message.attempts, [str(o) for o in outcomes]))
    return found


async def test_a_first_attempt_gates_and_sends_at_once(db: Sessions) -> None:
    provider = Scripted("ok")
    acts, deliverer = activities(db, provider)
    request = await request_for_a_user_with_a_device(db)
    outcome = await attempt(1).run(acts.deliver, request)
    assert outcome.result is not None and outcome.result.status is SendStatus.SENT
    assert deliverer.first_attempts == [True]
    assert len(provider.calls) == 1 and provider.calls[0].attempt == 1
    assert await rows(db, request) == [("sent", 1, ["sent"])]


async def test_a_retry_after_a_lost_completion_answers_from_the_table(db: Sessions) -> None:
    provider = Scripted("ok")
    acts, deliverer = activities(db, provider)
    request = await request_for_a_user_with_a_device(db)
    first = await attempt(1).run(acts.deliver, request)
    # The worker sent it but died before Temporal heard back: the activity runs again.
    again = await attempt(2).run(acts.deliver, request)
    assert again == first
    assert deliverer.first_attempts == [True, False]
    assert len(provider.calls) == 1, "never sent twice"
    assert await rows(db, request) == [("sent", 1, ["sent"])]


async def test_a_first_attempt_that_finds_rows_after_all_falls_back_to_them(
    db: Sessions,
) -> None:
    provider = Scripted("ok")
    acts, _ = activities(db, provider)
    request = await request_for_a_user_with_a_device(db)
    first = await attempt(1).run(acts.deliver, request)
    assert await attempt(1).run(acts.deliver, request) == first
    assert len(provider.calls) == 1
    assert await rows(db, request) == [("sent", 1, ["sent"])]


async def test_a_retryable_answer_leaves_the_row_pending_for_the_retry(db: Sessions) -> None:
    provider = Scripted("retry", "ok")
    acts, deliverer = activities(db, provider)
    request = await request_for_a_user_with_a_device(db)
    with pytest.raises(ApplicationError) as failed:
        await attempt(1).run(acts.deliver, request)
    assert failed.value.type == "Retryable" and not failed.value.non_retryable
    assert await rows(db, request) == [("pending", 1, ["retryable"])]
    outcome = await attempt(2).run(acts.deliver, request)
    assert outcome.result is not None and outcome.result.status is SendStatus.SENT
    assert deliverer.first_attempts == [True, False]
    assert [c.attempt for c in provider.calls] == [1, 2]
    assert len({c.message_id for c in provider.calls}) == 1  # the same message, again
    assert await rows(db, request) == [("sent", 2, ["retryable", "sent"])]


async def test_a_throttled_answer_asks_temporal_to_wait_as_the_provider_said(
    db: Sessions,
) -> None:
    provider = Scripted("throttle")
    acts, _ = activities(db, provider)
    request = await request_for_a_user_with_a_device(db)
    with pytest.raises(ApplicationError) as failed:
        await attempt(1).run(acts.deliver, request)
    assert failed.value.type == "Throttled"
    assert failed.value.next_retry_delay == timedelta(seconds=7)
    assert await rows(db, request) == [("pending", 1, ["throttled"])]


async def test_a_retry_whose_first_attempt_never_got_through_the_gate_runs_it(
    db: Sessions,
) -> None:
    provider = Scripted("ok")
    acts, deliverer = activities(db, provider)
    request = await request_for_a_user_with_a_device(db)
    # Attempt 1 died before its transaction committed: attempt 2 finds nothing and gates.
    outcome = await attempt(2).run(acts.deliver, request)
    assert outcome.result is not None and outcome.result.status is SendStatus.SENT
    assert deliverer.first_attempts == [False]
    assert await rows(db, request) == [("sent", 1, ["sent"])]


class Hanging(ChannelProvider):
    """A provider that takes the message and never answers (while `hang`), else refuses."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[OutboundMessage] = []
        self.hang = True
        self.called = asyncio.Event()

    async def send(self, message: OutboundMessage) -> ProviderResult:
        self.calls.append(message)
        self.called.set()
        if self.hang:
            await asyncio.Event().wait()
        raise RetryableError("ConnectionRefused")


async def test_a_resend_after_a_worker_died_mid_submit_stays_on_that_provider(
    db: Sessions,
) -> None:
    """An OTP (transactional: resent when its outcome is unknown) over a route of two
    providers. Attempt 1 reaches the primary, which takes it, and the worker dies before any
    answer: only the attempt's row knows where it went. Attempt 2 finds the primary refusing:
    the backup must not send it (it may have been delivered), so it waits for the primary."""
    settings = NudgeConfig.model_validate(
        {
            "sms": {
                "providers": [
                    {"kind": "twilio", "name": name, "account_sid": "AC1", "priority": n}
                    for n, name in enumerate(("primary", "backup"))
                ]
            }
        }
    ).sms_providers()
    primary, backup = Hanging("primary"), Scripted("ok")
    route = SmsRoute([RouteEntry(settings[0], primary), RouteEntry(settings[1], backup)])
    await route.start()
    deliverer = Deliverer(
        sessions=db,
        config=NudgeConfig(),
        providers=Providers({(Channel.SMS, None): route}),
        templates=kit_templates(),
    )
    acts = DeliveryActivities(deliverer)
    async with db() as session, session.begin():
        user = await ensure_user(session, external_id=f"otp-{uuid.uuid4()}")
        user.phone = "+14155550170"
    request = send_request(
        user.id,
        "t_otp",
        "code",
        Channel.SMS,
        "Otp Requested",
        {"code": "123456"},
        transactional=True,
    )
    died = asyncio.ensure_future(attempt(1).run(acts.deliver, request))
    await primary.called.wait()
    died.cancel()  # the worker dies mid-call: no outcome is ever written
    with contextlib.suppress(asyncio.CancelledError):
        await died
    primary.hang = False
    with pytest.raises(ApplicationError):
        await attempt(2).run(acts.deliver, request)
    assert len(primary.calls) == 2 and not backup.calls
    assert await rows(db, request) == [("pending", 2, ["unknown_resent", "retryable"])]
    async with db() as session:
        providers = await session.scalars(select(MessageAttempt.provider))
        assert set(providers) == {"primary"}
