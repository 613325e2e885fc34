"""`t_keyed`: one run per (user, cart) that optionally holds, then sends once; the journey
the benchmarks run (`bench/`). In a module of its own, as the journeys in `workflows/`
are: the sandbox re-imports a journey's module for every run it starts."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from engine import ALWAYS, Channel, Journey, JourneyEntry, JourneyResult, JourneySettings, journey
from engine.durations import Duration


class KeyedSettings(JourneySettings):
    hold: Duration = timedelta(seconds=0)
    channel: Channel = Channel.PUSH
    transactional: bool = False


@journey(trigger="Cart Touched", key="cart_id", reentry=ALWAYS, name="t_keyed")
class TKeyed(Journey[KeyedSettings]):
    """One run per (user, cart): optionally holds, then sends once."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.sleep(self.settings.hold)
        result = await self.send(
            "keyed", channel=self.settings.channel, transactional=self.settings.transactional
        )
        return self.finish(f"{result.status}:{result.reason}")
