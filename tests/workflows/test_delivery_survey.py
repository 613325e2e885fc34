"""The delivery-satisfaction survey (workflows/delivery_survey.py): the question after the
delivery, answers read leniently, a follow-up per answer; on the time-skipping kit."""

from __future__ import annotations

from datetime import time

import pytest

from engine.testing.pytest_plugin import EnvFactory
from tests.kit.clock import next_local
from workflows import DeliverySurvey
from workflows.delivery_survey import parse_score


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("5", 5),
        (" 4! ", 4),
        ("4/5", 4),
        ("I'd say 3 out of 5", 3),
        ("Two.", 2),
        ("****", 4),
        ("\u2b50\u2b50\u2b50\u2b50\u2b50", 5),
        ("1", 1),
        ("0", None),
        ("6", None),
        ("10", None),
        ("3 or 4", None),
        ("what?", None),
        ("2.5", None),
        ("", None),
    ],
)
def test_scores_are_read_leniently(text: str, score: int | None) -> None:
    assert parse_score(text) == score


async def test_the_question_an_answer_and_its_follow_up(journey_env: EnvFactory) -> None:
    env = await journey_env(DeliverySurvey, start_at=next_local("UTC", time(12, 0)))
    ada, bob = await env.user("ada"), await env.user("bob")
    for user in (ada, bob):
        await env.emit(user, "Order Delivered", {"order_id": "o-1"})
    await env.advance(hours=2, minutes=1)
    for user in (ada, bob):
        [question] = await env.sent(user)
        assert (question.template, question.channel) == ("question", "sms")
    # Not an answer: the wait goes on. Then a lenient one.
    await env.emit(ada, "SMS Received", {"text": "who is this?", "keyword": None})
    await env.emit(ada, "SMS Received", {"text": "I'd give it a 2", "keyword": None})
    await env.emit(bob, "SMS Received", {"text": "5/5 great", "keyword": None})
    assert [m.template for m in await env.sent(ada)] == ["question", "followup_sorry"]
    assert [m.template for m in await env.sent(bob)] == ["question", "followup_review"]
    assert (await env.run(ada, "delivery_survey")).outcome == "score=2"
    assert (await env.run(bob, "delivery_survey")).outcome == "score=5"


async def test_no_answer_within_two_days(journey_env: EnvFactory) -> None:
    env = await journey_env(DeliverySurvey, start_at=next_local("UTC", time(12, 0)))
    cy = await env.user("cy")
    await env.emit(cy, "Order Delivered")
    await env.advance(days=2, hours=3)
    assert (await env.run(cy, "delivery_survey")).outcome == "no_answer"
