"""What a run received and which `wait_for` may see it. Pure and sandbox-safe.

The rule: a `wait_for` sees every event the run received that no earlier `wait_for`
consumed and that arrived after the run's previous wait ended (or since entry, before the
first wait). So an answer that lands while the question is still being sent is found, and
an event that arrived while an earlier wait was looking for something else is not.
Duplicates (a `message_id` seen before) are dropped on arrival. So is an event that arrives
during a wait it does not match: by the rule, no later wait could see it.

Runs started before this rule (recorded without the `wait-for-since-previous-wait` patch)
keep the old one: a wait saw only events received after the previous *step* ended, counted
in history events; `legacy` selects it.
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
        # (event, history length when it arrived): the length only matters to `legacy`.
        self._pending: list[tuple[JourneyEvent, int]] = [(event, 0) for event in pending]
        self.received = 0
        self.legacy = False
        self._waiting: tuple[str, Where] | None = None

    def add(self, event: JourneyEvent, *, history_length: int = 0) -> bool:
        """Take an event in; False for a duplicate (ignored)."""
        if event.message_id in self._seen:
            return False
        self._seen[event.message_id] = None
        while len(self._seen) > SEEN_WINDOW:
            del self._seen[next(iter(self._seen))]
        self.received += 1
        if not self.legacy:
            if self._waiting is not None and not matches(event, *self._waiting):
                return True  # arrived during a wait it does not match: no wait will see it
            if sum(e.name == event.name for e, _ in self._pending) >= PENDING_PER_NAME:
                return True
        self._pending.append((event, history_length))
        return True

    def wait_started(self, name: str, where: Where) -> None:
        """A wait for `name` (filtered by `where`) begins."""
        self._waiting = (name, where)

    def take(self, name: str, where: Where, *, step_ended_at: int = 0) -> JourneyEvent | None:
        """Consume the first visible event matching `name` and `where`, if any.
        `step_ended_at` (history length) only applies to the legacy rule."""
        for index, (event, length) in enumerate(self._pending):
            if self.legacy and length < step_ended_at:
                continue
            if matches(event, name, where):
                del self._pending[index]
                return event
        return None

    def wait_ended(self) -> None:
        """A wait ended: what arrived before now is no longer visible to later waits."""
        self._waiting = None
        if not self.legacy:
            self._pending.clear()

    def seen(self) -> list[str]:
        """The remembered ids, oldest first (for continue-as-new)."""
        return list(self._seen)

    def pending(self) -> list[JourneyEvent]:
        """The events a next wait could still see (for continue-as-new)."""
        return [event for event, _ in self._pending]
