"""Delivery satisfaction survey: an SMS question after the delivery, a follow-up per answer.

`Order Delivered` starts it; after `ask_after` the user gets `question` ("how was your
delivery, 1 to 5?"). The first reply that reads as a score (`parse_score`: "4", "4/5",
"I'd say 4!", "four", "****", "⭐⭐⭐⭐") ends the wait; a reply that does not is not an answer
(the wait goes on). The follow-up: 1-2 `followup_sorry`, 3 `followup_thanks`, 4-5
`followup_review`. The run ends `score=<n>` (so `nudge stats` and `journey_runs` count the
answers per score), `no_answer` or `not_asked:<reason>`. A quick answer, one that lands while
the question is still being sent, counts (the `wait_for` rule).
"""

from __future__ import annotations

import re
from datetime import timedelta

from temporalio import workflow

from engine import (
    Channel,
    Duration,
    Journey,
    JourneyEntry,
    JourneyEvent,
    JourneyResult,
    JourneySettings,
    journey,
)

_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_STARS = re.compile(r"^[\s*\u2605\u2b50\ufe0f]+$")
_DIGIT = re.compile(r"(?<![\d.,])([1-5])(?![\d.,]\d)(?:\s*(?:/|out of|of)\s*5)?(?!\d)")
FOLLOW_UPS = {1: "followup_sorry", 2: "followup_sorry", 3: "followup_thanks"}


def parse_score(text: str) -> int | None:
    """A 1-5 score read leniently from a reply, or None when it holds none, or more than
    one ("3 or 4"). Stars count: "****" or "⭐⭐⭐⭐" is 4."""
    stripped = text.strip()
    if stripped and _STARS.match(stripped):
        stars = sum(c in "*\u2605\u2b50" for c in stripped)
        return stars if 1 <= stars <= 5 else None
    found = {int(m.group(1)) for m in _DIGIT.finditer(stripped)}
    found |= {v for w, v in _WORDS.items() if re.search(rf"\b{w}\b", stripped, re.IGNORECASE)}
    return found.pop() if len(found) == 1 else None


def _is_score(event: JourneyEvent) -> bool:
    return (
        event.properties.get("keyword") is None
        and parse_score(str(event.properties.get("text") or "")) is not None
    )


class DeliverySurveySettings(JourneySettings):
    ask_after: Duration = timedelta(hours=2)
    """How long after the delivery the question goes out."""
    answer_within: Duration = timedelta(days=2)
    """How long an answer is waited for."""


@journey(
    trigger="Order Delivered",
    listens=("SMS Received",),
    reentry=timedelta(days=30),
)
class DeliverySurvey(Journey[DeliverySurveySettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.sleep(self.settings.ask_after)
        asked = await self.send("question", channel=Channel.SMS)
        if not asked.sent:
            return self.finish(f"not_asked:{asked.reason}")
        reply = await self.wait_for(
            "SMS Received", timeout=self.settings.answer_within, where=_is_score
        )
        if reply is None:
            return self.finish("no_answer")
        score = parse_score(str(reply.properties.get("text") or ""))
        assert score is not None  # `_is_score` let it through
        template = FOLLOW_UPS.get(score, "followup_review")
        await self.send(template, channel=Channel.SMS, context={"score": score})
        return self.finish(f"score={score}")
