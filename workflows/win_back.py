"""Win-back: a lapsed user gets an offer, and a second one if they do not come back.

The trigger is inactivity: no `App Opened` for `INACTIVE_FOR` (14 days). Nudge's sweep
synthesizes the `User Inactive` event that starts the run (the recorded runs started on a
`User Inactive` event too: the run's code did not change).

A user who comes back (`App Opened`, also the goal) within `second_offer_after` ends the
run `returned`. (`App Opened` was once also an exit event, which made `returned`
unreachable: the exit won. The recorded runs end `returned`, which `nudge replay` checks.)
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from engine import (
    Channel,
    Duration,
    Goal,
    Inactive,
    Journey,
    JourneyEntry,
    JourneyResult,
    JourneySettings,
    journey,
)

INACTIVE_FOR = timedelta(days=14)


class WinBackSettings(JourneySettings):
    second_offer_after: Duration = timedelta(days=3)
    """How long to wait for the user to come back before the last offer."""


@journey(
    trigger=Inactive("App Opened", for_=INACTIVE_FOR),
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
            return self.finish("returned")
        await self.send("last_offer", channel=Channel.SMS)
        return self.finish("offered")
