"""Win-back: a lapsed user gets an offer, and a second one if they do not come back."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from engine import Channel, Goal, Journey, JourneyEntry, JourneyResult, JourneySettings, journey
from engine.durations import Duration


class WinBackSettings(JourneySettings):
    second_offer_after: Duration = timedelta(days=3)


@journey(
    trigger="User Inactive",
    exit_on=("App Opened",),
    goal=Goal("App Opened", within=timedelta(days=7)),
    reentry=timedelta(days=30),
)
class WinBack(Journey):
    Settings = WinBackSettings

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        variant = self.split("win_back_offer", ("discount", "content"), holdout=0.1)
        await self.send(
            f"offer_{variant}" if variant != "holdout" else "offer_discount", channel=Channel.PUSH
        )
        if await self.wait_for("App Opened", timeout=self.settings.second_offer_after):
            return self.finish("returned")
        await self.send("last_offer", channel=Channel.SMS)
        return self.finish("offered")
