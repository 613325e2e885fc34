"""Abandoned cart: a push after a quiet spell, then a last-call SMS the next morning.

Versioned behaviour (see CONTRIBUTING.md, "Changing a journey"):

- `last-call-min-value` (2026-11): the last-call SMS costs money and converts poorly on
  small carts, so it is only sent when the cart's `value` property is at least
  `last_call_min_value`; smaller carts get the push reminder only (outcome `push_only`).
  A cart without a `value` keeps the old behaviour. Runs started before this change replay
  the old path (`self.patched` is False for them).
"""

from __future__ import annotations

from datetime import time, timedelta

from temporalio import workflow

from engine import (
    Channel,
    Duration,
    Goal,
    Journey,
    JourneyEntry,
    JourneyResult,
    JourneySettings,
    journey,
)

PATCH_LAST_CALL_MIN_VALUE = "last-call-min-value"


class AbandonedCartSettings(JourneySettings):
    nudge_after: Duration = timedelta(hours=1)
    """How long a cart may sit before the first reminder."""
    last_call_at: time = time(10, 0)
    """Local time (user's zone) of the last-call SMS, the morning after the reminder."""
    last_call_min_value: float = 20.0
    """Smallest cart `value` (in the shop's currency) worth a last-call SMS."""


@journey(
    trigger="Cart Updated",
    listens=("Checkout Started",),
    exit_on=("Order Completed",),
    goal=Goal("Order Completed", within=timedelta(days=3)),
    reentry=timedelta(days=7),
)
class AbandonedCart(Journey[AbandonedCartSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        if await self.wait_for("Checkout Started", timeout=self.settings.nudge_after):
            return self.finish("checked_out")
        await self.send("cart_reminder", channel=Channel.PUSH)
        if self.patched(PATCH_LAST_CALL_MIN_VALUE) and not self._worth_a_last_call(entry):
            return self.finish("push_only")
        await self.sleep_until_local(self.settings.last_call_at)
        await self.send("cart_last_call", channel=Channel.SMS)
        return self.finish("reminded")

    def _worth_a_last_call(self, entry: JourneyEntry) -> bool:
        """Whether the cart that started the run is worth an SMS; unknown value: yes."""
        value = entry.event.properties.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return True
        try:
            return float(value) >= float(self.settings.last_call_min_value)
        except ValueError:
            return True
