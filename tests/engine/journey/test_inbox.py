"""engine.journey.inbox: which events a `wait_for` sees. Pure: driven the way `Journey`
drives it (a wait starts, takes what it may, ends), against a model of the rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.journey.inbox import SEEN_WINDOW, Inbox, Where, matches
from schemas.events import JourneyEvent

AT = datetime(2026, 1, 1, tzinfo=UTC)


def ev(message_id: str, name: str = "Ping", **properties: object) -> JourneyEvent:
    return JourneyEvent(message_id=message_id, name=name, properties=properties, timestamp=AT)


class Run:
    """Drives an `Inbox` as `Journey.wait_for` does: `wait` starts a wait and takes what it
    may; while it is open each `arrive` is a workflow task of its own, after which the wait
    checks again; `timeout` ends an open wait empty-handed."""

    def __init__(self, inbox: Inbox | None = None) -> None:
        self.inbox = inbox or Inbox()
        self.waiting: tuple[str, Where] | None = None
        self.answers: list[str | None] = []

    def arrive(self, event: JourneyEvent) -> bool:
        added = self.inbox.add(event)
        if self.waiting is not None:
            self._check()
        return added

    def arrive_together(self, events: list[JourneyEvent]) -> None:
        """Several events in one workflow task: every handler runs, then the wait checks."""
        for event in events:
            self.inbox.add(event)
        if self.waiting is not None:
            self._check()

    def wait(self, name: str, where: Where = None) -> None:
        assert self.waiting is None
        self.waiting = (name, where)
        self.inbox.wait_started(name, where)
        self._check()

    def timeout(self) -> None:
        assert self.waiting is not None
        self.waiting = None
        self.answers.append(None)
        self.inbox.wait_ended()

    def _check(self) -> None:
        assert self.waiting is not None
        taken = self.inbox.take(*self.waiting)
        if taken is not None:
            self.waiting = None
            self.answers.append(taken.message_id)
            self.inbox.wait_ended()


def test_matches_by_name_properties_or_predicate() -> None:
    cart = ev("1", "Cart", n=2, sku="x")
    assert matches(cart, "Cart", None)
    assert not matches(cart, "Other", None)
    assert matches(cart, "Cart", {"n": 2})
    assert matches(cart, "Cart", {"n": 2, "sku": "x"})
    assert not matches(cart, "Cart", {"n": 3})
    assert matches(cart, "Cart", {"missing": None})  # an absent property reads as None
    assert matches(cart, "Cart", lambda e: e.properties["n"] > 1)
    assert not matches(cart, "Cart", lambda e: False)


def test_an_event_before_the_first_wait_is_seen() -> None:
    run = Run()
    run.arrive(ev("a"))
    run.wait("Ping")
    assert run.answers == ["a"]


def test_an_answer_during_the_wait_is_taken_and_only_once() -> None:
    run = Run()
    run.wait("Ping")
    run.arrive(ev("a"))
    run.wait("Ping")
    assert run.answers == ["a"]
    assert run.waiting is not None  # the second wait did not get "a" again


def test_a_wait_takes_the_first_match_and_later_waits_see_only_newer_events() -> None:
    run = Run()
    for mid in ("a", "b"):
        run.arrive(ev(mid))
    run.wait("Ping")
    assert run.answers == ["a"]
    # "b" arrived before the first wait ended: the next wait does not see it.
    run.wait("Ping")
    assert run.answers == ["a"] and run.waiting is not None
    run.arrive(ev("c"))
    assert run.answers == ["a", "c"]


def test_an_event_that_did_not_match_a_wait_is_not_seen_later() -> None:
    run = Run()
    run.wait("Ping", {"n": 1})
    run.arrive(ev("two", n=2))  # during the filtered wait, no match
    run.arrive(ev("one", n=1))
    run.wait("Ping")
    assert run.answers == ["one"]
    run.timeout()
    assert run.answers == ["one", None]


def test_events_between_two_waits_are_seen_by_the_next_one() -> None:
    run = Run()
    run.wait("Ping")
    run.arrive(ev("p"))
    run.arrive(ev("q", "Pong"))  # its own workflow task, after the wait ended
    run.wait("Pong")
    assert run.answers == ["p", "q"]


def test_an_event_in_the_same_task_as_the_one_ending_a_wait_is_seen_next() -> None:
    inbox = Inbox()
    inbox.wait_started("Ping", None)
    # One workflow task delivers both signals; the wait's check runs after both handlers.
    inbox.add(ev("p"))
    inbox.add(ev("q", "Pong"))
    assert inbox.take("Ping", None) == ev("p")
    inbox.wait_ended()
    inbox.wait_started("Pong", None)
    assert inbox.take("Pong", None) == ev("q", "Pong")


def test_in_one_task_what_came_before_the_answer_is_gone_and_what_came_after_stays() -> None:
    """The quiz case: the question's trigger, a stray event and the answer in one batch."""
    inbox = Inbox()
    inbox.wait_started("Answer", None)
    inbox.add(ev("stray", "Pong"))  # before the answer: arrived during the wait, unmatched
    inbox.add(ev("answer", "Answer"))
    inbox.add(ev("late", "Pong"))  # behind the answer: after the wait ended
    assert inbox.take("Answer", None) == ev("answer", "Answer")
    inbox.wait_ended()
    assert inbox.pending() == [ev("late", "Pong")]


def test_runs_without_the_after_answer_patch_keep_dropping_unmatched_arrivals() -> None:
    inbox = Inbox()
    inbox.after_answer = False  # recorded before `wait-for-keeps-after-answer`
    inbox.wait_started("Ping", None)
    inbox.add(ev("p"))
    inbox.add(ev("q", "Pong"))
    assert inbox.take("Ping", None) == ev("p")
    inbox.wait_ended()
    assert inbox.pending() == []


def test_a_timeout_clears_what_arrived_in_its_task() -> None:
    inbox = Inbox()
    inbox.wait_started("Ping", None)
    inbox.add(ev("q", "Pong"))
    assert inbox.take("Ping", None) is None
    inbox.wait_ended()  # the timer fired in the task that delivered Pong
    assert inbox.pending() == []


def test_duplicates_are_dropped_and_not_counted() -> None:
    inbox = Inbox(seen=["entry"])
    assert inbox.add(ev("entry")) is False  # the trigger itself is seen at entry
    assert inbox.add(ev("a")) is True
    assert inbox.add(ev("a")) is False
    assert inbox.received == 1
    assert inbox.seen() == ["entry", "a"]


def test_seen_ids_are_a_window_of_the_newest() -> None:
    inbox = Inbox()
    for n in range(SEEN_WINDOW + 5):
        inbox.add(ev(f"m{n}", "Tick"))
    seen = inbox.seen()
    assert len(seen) == SEEN_WINDOW
    assert seen[0] == "m5" and seen[-1] == f"m{SEEN_WINDOW + 4}"
    assert inbox.add(ev("m0", "Tick")) is True  # forgotten: no longer a duplicate


def test_state_carried_across_continue_as_new_resumes_the_same_view() -> None:
    first = Inbox()
    first.add(ev("a", "Pong"))
    second = Inbox(seen=first.seen(), pending=first.pending())
    assert second.add(ev("a", "Pong")) is False
    run = Run(second)
    run.wait("Pong")
    assert run.answers == ["a"]


def test_the_legacy_rule_counts_from_the_end_of_the_previous_step() -> None:
    inbox = Inbox()
    inbox.legacy = True
    inbox.add(ev("early"), history_length=5)
    inbox.add(ev("late"), history_length=12)
    assert inbox.take("Ping", None, step_ended_at=10) == ev("late")
    inbox.wait_ended()
    assert inbox.pending() == [ev("early")]  # legacy waits never clear what they skipped


# -- the rule, against a model ------------------------------------------------------------


@dataclass
class Model:
    """The rule as DESIGN.md states it, in the order events were received (whether each
    came in a workflow task of its own or several in one): a wait sees what arrived (not a
    repeat) since the previous wait ended and no wait consumed; while a wait is open, a
    matching arrival answers it at once."""

    visible: list[JourneyEvent] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    waiting: tuple[str, Where] | None = None
    answers: list[str | None] = field(default_factory=list)

    def arrive(self, event: JourneyEvent) -> None:
        if event.message_id in self.ids:
            return
        self.ids.add(event.message_id)
        if self.waiting is None:
            self.visible.append(event)
        elif matches(event, *self.waiting):
            self._answer(event)

    def arrive_together(self, events: list[JourneyEvent]) -> None:
        """Received in this order: the wait ends at its answer; the rest arrived after it."""
        for event in events:
            self.arrive(event)

    def wait(self, name: str, where: Where) -> None:
        found = next((e for e in self.visible if matches(e, name, where)), None)
        if found is None:
            self.waiting = (name, where)
        else:
            self._answer(found)

    def timeout(self) -> None:
        self.answers.append(None)
        self.waiting, self.visible = None, []

    def _answer(self, event: JourneyEvent) -> None:
        self.answers.append(event.message_id)
        self.waiting, self.visible = None, []


NAMES = st.sampled_from(["Ping", "Pong"])
WHERES = st.sampled_from([None, {"n": 1}, {"n": 2}])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), NAMES, st.integers(0, 2), st.integers(0, 30)),
        st.tuples(
            st.just("together"),
            st.lists(st.tuples(NAMES, st.integers(0, 2), st.integers(0, 30)), max_size=4),
        ),
        st.tuples(st.just("wait"), NAMES, WHERES),
        st.tuples(st.just("timeout")),
    ),
    max_size=40,
)


@settings(max_examples=250, deadline=None)
@given(steps=STEPS)
def test_the_inbox_follows_the_rule(steps: list[tuple[object, ...]]) -> None:
    run, model = Run(), Model()
    for step in steps:
        if step[0] == "arrive":
            _, name, n, mid = step
            event = ev(f"e{mid}", str(name), n=n)
            run.arrive(event)
            model.arrive(event)
        elif step[0] == "together":
            batch = cast(list[tuple[str, int, int]], step[1])
            events = [ev(f"e{mid}", name, n=n) for name, n, mid in batch]
            run.arrive_together(events)
            model.arrive_together(events)
        elif step[0] == "wait":
            if run.waiting is not None:
                continue
            _, name, where = step
            run.wait(str(name), where)  # type: ignore[arg-type]
            model.wait(str(name), where)  # type: ignore[arg-type]
        elif run.waiting is not None:
            run.timeout()
            model.timeout()
        assert run.answers == model.answers
        assert (run.waiting is None) == (model.waiting is None)
    assert run.inbox.received == len(model.ids)
