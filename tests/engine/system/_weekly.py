"""A recurring journey for the schedule tests (the sandbox imports this module: no harness)."""

from __future__ import annotations

from temporalio import workflow

from engine import ALWAYS, Journey, JourneyEntry, JourneyResult, JourneySettings, journey, segment

EVERYONE = segment("t_everyone", 'plan == "weekly"')


@journey(schedule="0 9 * * MON", audience=EVERYONE, local=True, reentry=ALWAYS, name="t_weekly")
class TWeekly(Journey[JourneySettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        return self.finish("entered")
