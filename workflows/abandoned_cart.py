"""Abandoned cart: a push after a quiet spell, then a last-call SMS the next morning."""

from __future__ import annotations

from datetime import time, timedelta

from temporalio import workflow

from engine import Channel, Goal, Journey, JourneyEntry, JourneyResult, JourneySettings, journey
from engine.durations import Duration


class AbandonedCartSettings(JourneySettings):
    nudge_after: Duration = timedelta(hours=1)
    """How long a cart may sit before the first reminder."""
    last_call_at: time = time(10, 0)
    """Local time (user's zone) of the last-call SMS, the morning after the reminder."""


@journey(
    trigger="Cart Updated",
    exit_on=("Order Completed",),
    goal=Goal("Order Completed", within=timedelta(days=3)),
    reentry=timedelta(days=7),
)
class AbandonedCart(Journey):
    Settings = AbandonedCartSettings

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        if await self.wait_for("Checkout Started", timeout=self.settings.nudge_after):
            return self.finish("checked_out")
        await self.send("cart_reminder", channel=Channel.PUSH)
        await self.sleep_until_local(self.settings.last_call_at)
        await self.send("cart_last_call", channel=Channel.SMS)
        return self.finish("reminded")
