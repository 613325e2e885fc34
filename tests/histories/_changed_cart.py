"""AbandonedCart with a step added WITHOUT `workflow.patched`: what replay tests must catch.

Declared under the same journey name, `abandoned_cart`, as the real one; tests hand it to the
replayer in place of the real class.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from engine import Channel, Goal, Journey, JourneyEntry, JourneyResult, journey
from workflows.abandoned_cart import AbandonedCartSettings


@journey(
    trigger="Cart Updated",
    listens=("Checkout Started",),
    exit_on=("Order Completed",),
    goal=Goal("Order Completed", within=timedelta(days=3)),
    reentry=timedelta(days=7),
    name="abandoned_cart",
)
class UnpatchedCart(Journey[AbandonedCartSettings]):
    """The growth team's idea, shipped wrong: hold the push reminder five more minutes."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        if await self.wait_for("Checkout Started", timeout=self.settings.nudge_after):
            return self.finish("checked_out")
        # New step, no `workflow.patched(...)`: old histories have no timer here.
        await self.sleep(timedelta(minutes=5))
        await self.send("cart_reminder", channel=Channel.PUSH)
        await self.sleep_until_local(self.settings.last_call_at)
        await self.send("cart_last_call", channel=Channel.SMS)
        return self.finish("reminded")
