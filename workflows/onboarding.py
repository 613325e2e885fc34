"""Onboarding: three messages over three days; ends early once the profile is complete."""

from __future__ import annotations

from datetime import timedelta

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


class OnboardingSettings(JourneySettings):
    day: Duration = timedelta(days=1)
    """The gap between onboarding messages."""


@journey(
    trigger="Signed Up",
    exit_on=("Profile Completed",),
    goal=Goal("Profile Completed", within=timedelta(days=7)),
)
class Onboarding(Journey[OnboardingSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.send("welcome", channel=Channel.PUSH)
        await self.sleep(self.settings.day)
        await self.send("complete_profile", channel=Channel.PUSH)
        await self.sleep(self.settings.day)
        await self.send("tips", channel=Channel.SMS)
        return self.finish("onboarded")
