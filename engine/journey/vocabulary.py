"""The vocabulary of journeys: declarations, settings, the exit signal, run state.

Kept apart from `engine.journey.base` (the base class and the decorator) so both stay small;
everything here is re-exported there. Runs inside the workflow sandbox: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel
from temporalio.common import RetryPolicy, SearchAttributeKey

from engine.journey.settings import JourneySettings
from engine.journey.triggers import Trigger
from schemas.events import JourneyEvent

ALWAYS: Literal["always"] = "always"
"""`reentry=ALWAYS`: a trigger starts a new run whenever the previous one has ended."""

EVENT_SIGNAL = "event"

# Engine-level changes to what runs do, behind `workflow.patched` so runs recorded before
# them replay unchanged (see CONTRIBUTING, "Changing a journey").
PATCH_WAIT_RULE = "wait-for-since-previous-wait"
"""`wait_for` sees events since the previous wait ended (before: since the previous step)."""
PATCH_WAIT_AFTER_ANSWER = "wait-for-keeps-after-answer"
"""An event received right behind the one that answered a wait (same workflow task) is seen
by the next wait (before: dropped because it did not match the open wait)."""
PATCH_SMS_LANES = "sms-lanes"
"""An SMS send asks for its lanes and is delivered on its provider's task queue."""
PATCH_NO_RUN_STARTED = "router-records-run-id"
"""The router records the run id at entry; runs no longer start with a bookkeeping call."""
PATCH_RECORD_VARIANT = "record-variant-at-split"
"""`split` records the run's experiment and arm at once (before: only when the run ended)."""
SA_JOURNEY = SearchAttributeKey.for_keyword("NudgeJourney")
SA_USER = SearchAttributeKey.for_keyword("NudgeUserId")
SA_STEP = SearchAttributeKey.for_keyword("NudgeStep")

# Bookkeeping is cheap and local; delivery is a regular activity so its retries back off
# on the server and survive a worker crash.
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
BOOKKEEPING_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["InvalidRequest"],
)


@dataclass(frozen=True)
class Goal:
    """A conversion: `event` arriving within `within` of entry."""

    event: str
    within: timedelta


Reentry = timedelta | Literal["always"] | None


DEFAULT_MAX_HISTORY = 4_000
"""History events after which a run continues as new (Temporal warns at 10,240)."""


@dataclass(frozen=True)
class JourneySpec:
    """What `@journey(...)` declared; the router and the worker read it."""

    name: str
    trigger: str | None
    exit_on: tuple[str, ...]
    goal: Goal | None
    reentry: Reentry
    key: str | None
    settings: type[JourneySettings]
    listens: tuple[str, ...] = ()
    """Events the journey waits for (`wait_for`) besides its trigger, exits and goal."""
    max_history: int = DEFAULT_MAX_HISTORY
    starts: Trigger | None = None
    """A synthesized trigger (`Inactive`, `OnDate`, `Entered`, `Exited`); `trigger` is then
    the name of the event Nudge synthesizes for it."""

    def started_by(self, name: str, properties: Mapping[str, Any]) -> bool:
        """Whether an event `name` with `properties` starts a run of this journey."""
        if name != self.trigger:
            return False
        return self.starts is None or self.starts.starts(self.name, properties)

    schedule: str | None = None
    """A cron expression: every member of `audience` is entered at each firing."""
    audience: str | None = None
    """The segment a schedule enters."""
    local: bool = False
    """The schedule's time of day is each user's own wall clock."""
    transactional: bool = False
    """Runs go ahead of other journeys' work on the shared task queue (Temporal priority)."""

    @property
    def interests(self) -> frozenset[str]:
        """Every event a run can react to: the router signals a run with these only."""
        goal = (self.goal.event,) if self.goal else ()
        trigger = (self.trigger,) if self.trigger else ()
        return frozenset((*trigger, *self.exit_on, *goal, *self.listens))


class JourneyDefinitionError(TypeError):
    """A journey uses the contract wrongly (e.g. waits for its own exit event). Raised at
    declaration when it can be seen there, otherwise at the step; the run then fails."""


class JourneyExited(Exception):
    """Raised inside a run when an `exit_on` event arrived; the decorator turns it into a result."""

    def __init__(self, event: JourneyEvent) -> None:
        super().__init__(event.name)
        self.event = event


class JourneyState(BaseModel):
    """What the `state` query answers: where a run is and what it has done."""

    journey: str
    user_id: str
    step: str
    sent: int
    converted: bool
    variant: str | None = None
    events_seen: int
    continued: int = 0
    """How many times the run continued as new."""
