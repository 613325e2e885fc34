"""Win-back: a lapsed user gets an offer, and a second one if they do not come back.

Versioned behaviour (see CONTRIBUTING.md, "Changing a journey"):

- `win-back-returned` (2026-12): `App Opened` used to be an exit event as well as the event
  the journey waited for, so a user who came back ended the run as `exited:App Opened` and
  the `returned` outcome was unreachable. It is now only waited for (and the goal): a user
  who comes back within `second_offer_after` ends the run `returned`. Runs recorded before
  the change replay the old ending.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from engine import (
    Channel,
    Duration,
    Goal,
    Journey,
    JourneyEntry,
    JourneyExited,
    JourneyResult,
    JourneySettings,
    journey,
)

PATCH_RETURNED = "win-back-returned"


class WinBackSettings(JourneySettings):
    second_offer_after: Duration = timedelta(days=3)
    """How long to wait for the user to come back before the last offer."""


@journey(
    trigger="User Inactive",
    listens=("App Opened",),
    goal=Goal("App Opened", within=timedelta(days=7)),
    reentry=timedelta(days=30),
)
class WinBack(Journey[WinBackSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        variant = self.split("win_back_offer", ("discount", "content"), holdout=0.1)
        offer = variant.pick(discount="offer_discount", content="offer_content")
        await self.send(offer, channel=Channel.PUSH)
        came_back = await self.wait_for("App Opened", timeout=self.settings.second_offer_after)
        if came_back:
            if not self.patched(PATCH_RETURNED):
                raise JourneyExited(came_back)  # how runs recorded before the fix ended
            return self.finish("returned")
        await self.send("last_offer", channel=Channel.SMS)
        return self.finish("offered")
