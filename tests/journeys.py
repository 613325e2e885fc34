"""Journeys made for tests: each exercises one part of the contract, in seconds.

Their templates are in `tests/templates/<journey>/` (`tests.kit.Stack` loads them; give
`templates=kit_templates()` to the time-skipping kit). The workflow sandbox imports this
module: it imports only what a journey may. `t_keyed`, the journey the benchmarks run, has
a module of its own (`tests.journeys_keyed`): the sandbox re-imports the module of a
journey for every run, so a run pays for every journey its module defines.
Waits that a test answers are long (an hour): a test waits for the run to reach the step,
then sends the event, so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
from datetime import time, timedelta

from temporalio import workflow

from engine import (
    ALWAYS,
    Channel,
    Goal,
    Journey,
    JourneyEntry,
    JourneyResult,
    JourneySettings,
    journey,
)
from engine.durations import Duration
from engine.journey import Journeys, registry
from engine.journey.triggers import GEOFENCE_EXITED, Entered, OnDate
from tests.journeys_keyed import TKeyed


class SequenceSettings(JourneySettings):
    wait: Duration = timedelta(seconds=8)
    pause: Duration = timedelta(seconds=2)


@journey(
    trigger="Seq Start",
    exit_on=("Seq Stop",),
    goal=Goal("Seq Goal", within=timedelta(hours=1)),
    listens=("Ping",),
    reentry=ALWAYS,
)
class TSequence(Journey[SequenceSettings]):
    """wait_for (filtered) → send → sleep → wait_for → send."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        first = await self.wait_for("Ping", timeout=self.settings.wait, where={"n": 1})
        one = await self.send("seq_one", channel=Channel.PUSH)
        await self.sleep(self.settings.pause)
        second = await self.wait_for("Ping", timeout=self.settings.wait)
        two = await self.send("seq_two", channel=Channel.PUSH)
        got = [e.properties.get("n") if e else None for e in (first, second)]
        return self.finish(f"first={got[0]} second={got[1]} one={one.status} two={two.status}")


@journey(trigger="Pair Start", listens=("Ping", "Pong"), reentry=ALWAYS, name="t_pair")
class TPair(Journey[JourneySettings]):
    """Two waits back to back: nothing in between them but the step boundary."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        ping = await self.wait_for("Ping", timeout=timedelta(hours=1))
        pong = await self.wait_for("Pong", timeout=timedelta(hours=1))
        return self.finish(f"ping={bool(ping)} pong={bool(pong)}")


@journey(trigger="Quiz Start", listens=("Quiz Answer",), reentry=ALWAYS, name="t_quiz")
class TQuiz(Journey[JourneySettings]):
    """A question, then a wait for its answer: an answer that lands while the question is
    still being sent must be found."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        question = await self.send("question", channel=Channel.PUSH)
        answer = await self.wait_for("Quiz Answer", timeout=timedelta(hours=1))
        choice = answer.properties.get("choice") if answer else None
        return self.finish(f"question={question.status} answer={choice}")


@journey(trigger="Otp Requested", reentry=ALWAYS, name="t_otp", transactional=True)
class TOtp(Journey[JourneySettings]):
    """A one-time code by SMS: transactional, so it takes the SMS lanes' own queues."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        result = await self.send("code", channel=Channel.SMS, transactional=True)
        return self.finish(f"code={result.status}")


class BurstSettings(JourneySettings):
    texts: int = 10
    at_once: bool = False


@journey(trigger="Burst Start", reentry=ALWAYS, name="t_burst")
class TBurst(Journey[BurstSettings]):
    """`texts` marketing SMS one after the other (a few runs make a steady stream), or all
    `at_once` (a few runs queue a backlog)."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        steps = [f"text-{n}" for n in range(self.settings.texts)]
        if self.settings.at_once:
            results = await asyncio.gather(
                *(self.send("text", channel=Channel.SMS, step=step) for step in steps)
            )
        else:
            results = [await self.send("text", channel=Channel.SMS, step=step) for step in steps]
        return self.finish(f"sent={sum(r.status == 'sent' for r in results)}")


class QuickSettings(JourneySettings):
    pause: Duration = timedelta(seconds=0)


@journey(trigger="Once Start", reentry=None, name="t_once")
class TOnce(Journey[QuickSettings]):
    """Ends at once; enterable once per user ever."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.sleep(self.settings.pause)
        return self.finish("done")


COOL_DOWN = timedelta(hours=1)


@journey(trigger="Cool Start", reentry=COOL_DOWN, name="t_cool")
class TCool(Journey[JourneySettings]):
    """Ends at once; a new entry needs `COOL_DOWN` since the last one."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        return self.finish("done")


@journey(
    trigger="Order Placed",
    key="order_id",
    exit_on=("Order Delivered",),
    goal=Goal("Order Delivered", within=timedelta(hours=1)),
    reentry=ALWAYS,
    name="t_order",
)
class TOrder(Journey[SequenceSettings]):
    """Keyed by order; the exit event is also the goal (as in abandoned cart)."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.sleep(self.settings.pause)
        await self.send("order_update", channel=Channel.PUSH)
        return self.finish("updated")


@journey(
    trigger="Split Start",
    goal=Goal("Split Goal", within=timedelta(hours=1)),
    reentry=ALWAYS,
    name="t_split",
)
class TSplit(Journey[JourneySettings]):
    """A/B split with a holdout; waits a little for the goal."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        variant = self.split("t_split_test", {"a": 1, "b": 1}, holdout=0.3)
        result = await self.send("split_msg", channel=Channel.PUSH)
        await self.wait_for("Split Goal", timeout=timedelta(seconds=3))
        return self.finish(f"{variant}:{result.status}:{result.reason}")


class SmsSettings(JourneySettings):
    wait_reply: Duration = timedelta(seconds=0)


@journey(trigger="Sms Start", listens=("SMS Received",), reentry=ALWAYS, name="t_sms")
class TSms(Journey[SmsSettings]):
    """Two-way SMS: a text, a wait for the reply, a follow-up."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        first = await self.send("text", channel=Channel.SMS)
        reply = await self.wait_for("SMS Received", timeout=self.settings.wait_reply)
        second = await self.send("followup", channel=Channel.SMS)
        keyword = reply.properties.get("keyword") if reply else None
        return self.finish(
            f"first={first.status} reply={keyword} second={second.status}:{second.reason}"
        )


class ClickSettings(JourneySettings):
    wait: Duration = timedelta(hours=1)


@journey(
    trigger="Click Start",
    listens=("Message Clicked",),
    goal=Goal("Message Clicked", within=timedelta(hours=1)),
    reentry=ALWAYS,
    name="t_click",
)
class TClick(Journey[ClickSettings]):
    """An SMS with a tracked link, then a wait for its click (which is also the goal)."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.send("link_sms", channel=Channel.SMS)
        clicked = await self.wait_for(
            "Message Clicked", timeout=self.settings.wait, where={"step": "link_sms"}
        )
        return self.finish("clicked" if clicked else "ignored")


@journey(trigger=Entered("office"), exit_on=(GEOFENCE_EXITED,), reentry=ALWAYS, name="t_place")
class TPlace(Journey[JourneySettings]):
    """Started by entering the `office` geofence: one push, then it waits to be left."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.send("welcome", channel=Channel.PUSH)
        await self.sleep(timedelta(days=1))
        return self.finish(f"entered:{entry.event.properties['geofence']}")


@journey(
    trigger=OnDate("birthday", at=time(9), anniversary=True), reentry=ALWAYS, name="t_birthday"
)
class TBirthday(Journey[JourneySettings]):
    """Started on the user's birthday (a profile attribute), at 09:00 in their zone."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.send("greeting", channel=Channel.PUSH)
        return self.finish("greeted")


TEST_JOURNEYS: Journeys = registry(
    (TSequence, TPair, TQuiz, TSms, TOtp, TBurst, TOrder, TOnce, TCool, TKeyed, TSplit, TClick)
)
