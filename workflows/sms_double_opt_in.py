"""SMS double opt-in: a consent recorded as `pending` asks the number to confirm.

`PUT /v1/users/{id}/consent/sms` with `"state": "pending"` (e.g. from a web form) emits
`SMS Opt-In Requested`; this journey texts the confirmation request (transactional: it goes
out although marketing consent is not given yet) and waits for the reply. A YES or START
from the number turns the consent `subscribed` (triggers/smpp.py records it, with the text
as evidence); the run ends `confirmed`, or `expired` when no reply came in time.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from engine import (
    ALWAYS,
    OPT_IN_REQUESTED,
    Channel,
    Duration,
    Journey,
    JourneyEntry,
    JourneyResult,
    JourneySettings,
    journey,
)


class SmsDoubleOptInSettings(JourneySettings):
    confirm_within: Duration = timedelta(days=2)
    """How long the confirmation request stays open."""


@journey(trigger=OPT_IN_REQUESTED, listens=("SMS Received",), reentry=ALWAYS, transactional=True)
class SmsDoubleOptIn(Journey[SmsDoubleOptInSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        asked = await self.send("confirm_request", channel=Channel.SMS, transactional=True)
        if not asked.sent:
            return self.finish(f"not_asked:{asked.reason}")
        reply = await self.wait_for(
            "SMS Received", timeout=self.settings.confirm_within, where={"keyword": "start"}
        )
        return self.finish("confirmed" if reply else "expired")
