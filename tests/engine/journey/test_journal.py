"""engine.journey.journal: the step journal a run carries across continue-as-new. Pure.

A continued run executes `run` from the top again: each recorded step answers with its
recorded result, in order, until the journal runs out; then steps are live again. (The
journey end to end across continue-as-new: tests/engine/journey/test_continue_as_new.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.journey.journal import Journal
from engine.journey.vocabulary import JourneyDefinitionError
from schemas.common import SendStatus
from schemas.journeys import SendResult, StepRecord

UNTIL = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def sent(*ids: str) -> SendResult:
    return SendResult(status=SendStatus.SENT, message_ids=list(ids))


def test_a_fresh_journal_records_live_steps() -> None:
    journal = Journal()
    assert journal.recorded("send", "welcome") is None
    record = journal.start(StepRecord(kind="send", name="welcome"))
    record.done, record.send = True, sent("m1")
    assert journal.names("send") == {"welcome"}
    assert journal.steps() == [record]


def test_a_continued_run_gets_its_recorded_results_in_order() -> None:
    carried = [
        StepRecord(kind="send", name="welcome", done=True, send=sent("m1")),
        StepRecord(kind="sleep", name="sleep", done=True, until=UNTIL),
        StepRecord(kind="wait", name="Ping", until=UNTIL),  # where the run was
    ]
    journal = Journal(carried)
    first = journal.recorded("send", "welcome")
    assert first is not None and first.done and first.send == sent("m1")
    assert journal.recorded("sleep", "sleep") == carried[1]
    waiting = journal.recorded("wait", "Ping")
    assert waiting is not None and not waiting.done and waiting.until == UNTIL
    # The journal ran out: the next step is live, and is recorded after the carried ones.
    assert journal.recorded("send", "bye") is None
    journal.start(StepRecord(kind="send", name="bye"))
    assert [s.name for s in journal.steps()] == ["welcome", "sleep", "Ping", "bye"]
    assert journal.names("send") == {"welcome", "bye"}


def test_a_journey_changed_in_between_is_a_definition_error_naming_the_step() -> None:
    journal = Journal([StepRecord(kind="send", name="welcome", done=True, send=sent())])
    with pytest.raises(JourneyDefinitionError, match=r"step 1 is send 'tips'.*'welcome'"):
        journal.recorded("send", "tips")
    other = Journal([StepRecord(kind="sleep", name="sleep", done=True)])
    with pytest.raises(JourneyDefinitionError, match="patched"):
        other.recorded("wait", "Ping")


def test_names_count_only_the_steps_replayed_so_far() -> None:
    journal = Journal(
        [
            StepRecord(kind="send", name="a", done=True, send=sent()),
            StepRecord(kind="send", name="b", done=True, send=sent()),
        ]
    )
    assert journal.names("send") == set()
    journal.recorded("send", "a")
    assert journal.names("send") == {"a"}
    assert journal.names("wait") == set()


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["send", "wait", "sleep", "patch"]), st.text(max_size=8)),
        max_size=12,
    )
)
def test_replaying_the_same_steps_gives_back_every_record(steps: list[tuple[str, str]]) -> None:
    first = Journal()
    for kind, name in steps:
        assert first.recorded(kind, name) is None
        first.start(StepRecord(kind=kind, name=name, done=True))
    again = Journal(first.steps())
    for kind, name in steps:
        record = again.recorded(kind, name)
        assert record is not None and (record.kind, record.name) == (kind, name)
    assert again.recorded("send", "next") is None
    assert again.steps() == first.steps()
