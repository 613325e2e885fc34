"""Journeys that misuse the contract in ways only a run can show (the workflow sandbox
imports this module, so it imports only what a journey may)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from engine import Channel, Journey, JourneyEntry, JourneyResult, JourneySettings, journey


@journey(trigger="Twice Start", name="t_twice")
class TTwice(Journey[JourneySettings]):
    """Sends one step name twice: the second send fails the run."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.send("twice", channel=Channel.PUSH)
        await self.send("twice", channel=Channel.PUSH)
        return self.finish("sent twice")


@journey(trigger="Dynamic Start", name="t_dynamic_wait")
class TDynamicWait(Journey[JourneySettings]):
    """Waits for an event named at run time that it does not listen to: refused at the step."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        name = str(entry.event.properties.get("wait_for", "Never Declared"))
        await self.wait_for(name, timeout=timedelta(hours=1))
        return self.finish("waited")
