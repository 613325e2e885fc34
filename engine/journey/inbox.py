"""What a run received and which `wait_for` may see it. Pure and sandbox-safe.

The rule: a `wait_for` sees every event the run received that no earlier `wait_for`
consumed and that arrived after the run's previous wait ended (or since entry, before the
first wait). So an answer that lands while the question is still being sent is found, and
an event that arrived while an earlier wait was looking for something else is not.

"Arrived" is the order in which the run received events, not workflow tasks: a wait ends at
the event that answers it (or when it starts, if the answer was already there), so an event
received right behind the answer (in the same workflow task, as a loaded worker or a batch
delivers them) is seen by the next wait; one received before the answer, or before a
timeout, is not. Duplicates (a `message_id` seen before) are dropped on arrival.

Older runs keep the rule they started with, chosen once per run by `Journey` from its
patch markers: without `wait-for-since-previous-wait`, `legacy` (a wait saw only events
received after the previous *step* ended, counted in history events); without
`wait-for-keeps-after-answer`, `after_answer = False` (an event that did not match the
open wait was dropped on arrival, even one behind the answer in the same task).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from schemas.events import JourneyEvent

Where = Mapping[str, Any] | Callable[[JourneyEvent], bool] | None

PENDING_PER_NAME = 100
"""Events of one name kept for a later wait while the run is not waiting (the oldest: a wait
takes the first match). A run that sleeps for weeks while a chatty event streams in stays
small; a wait filtering past the first hundred of one name may miss a later one."""

SEEN_WINDOW = 1_000
"""How many recent message ids a run remembers to drop duplicates (carried across
continue-as-new; the router retries an event within minutes, never after a thousand)."""


def matches(event: JourneyEvent, name: str, where: Where) -> bool:
    """Whether `event` is a `name` event passing `where` (equal properties, or a predicate)."""
    if event.name != name:
        return False
    if where is None:
        return True
    if callable(where):
        return bool(where(event))
    return all(event.properties.get(k) == v for k, v in where.items())


class Inbox:
    """The events a run can still wait for, and the ids it has seen."""

    def __init__(self, *, seen: Iterable[str] = (), pending: Iterable[JourneyEvent] = ()) -> None:
        self._seen: dict[str, None] = dict.fromkeys(seen)
        # (event, history length when it arrived, arrival number): the length only matters
        # to `legacy`; the number orders arrivals around the answer of a wait.
        self._pending: list[tuple[JourneyEvent, int, int]] = [(event, 0, 0) for event in pending]
        self.received = 0
        self.legacy = False
        self.after_answer = True
        self._arrivals = 0
        self._answer: int | None = None
        self._wait_began = 0
        self._waiting: tuple[str, Where] | None = None

    def add(self, event: JourneyEvent, *, history_length: int = 0) -> bool:
        """Take an event in; False for a duplicate (ignored)."""
        if event.message_id in self._seen:
            return False
        self._seen[event.message_id] = None
        while len(self._seen) > SEEN_WINDOW:
            del self._seen[next(iter(self._seen))]
        self.received += 1
        self._arrivals += 1
        if not self.legacy:
            open_wait = self._waiting if self._answer is None else None
            if open_wait is not None and not self.after_answer and not matches(event, *open_wait):
                return True  # arrived during a wait it does not match: no wait will see it
            if sum(e.name == event.name for e, _, _ in self._pending) >= PENDING_PER_NAME:
                return True
        self._pending.append((event, history_length, self._arrivals))
        return True

    def wait_started(self, name: str, where: Where) -> None:
        """A wait for `name` (filtered by `where`) begins."""
        self._waiting = (name, where)
        self._answer = None
        self._wait_began = self._arrivals

    def take(self, name: str, where: Where, *, step_ended_at: int = 0) -> JourneyEvent | None:
        """Consume the first visible event matching `name` and `where`, if any.
        `step_ended_at` (history length) only applies to the legacy rule."""
        for index, (event, length, arrival) in enumerate(self._pending):
            if self.legacy and length < step_ended_at:
                continue
            if matches(event, name, where):
                del self._pending[index]
                self._answer = arrival
                return event
        return None

    def wait_ended(self) -> None:
        """A wait ended: what arrived before its answer (all of it, after a timeout) is no
        longer visible to later waits."""
        answer, self._answer, self._waiting = self._answer, None, None
        if self.legacy:
            return
        if self.after_answer and answer is not None:
            ended = max(answer, self._wait_began)
            self._pending = [p for p in self._pending if p[2] > ended]
        else:
            self._pending.clear()

    def seen(self) -> list[str]:
        """The remembered ids, oldest first (for continue-as-new)."""
        return list(self._seen)

    def pending(self) -> list[JourneyEvent]:
        """The events a next wait could still see (for continue-as-new)."""
        return [event for event, _, _ in self._pending]
