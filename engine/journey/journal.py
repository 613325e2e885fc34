"""The steps a run has taken, so a run continued as new can pick up where it was.

A continued run executes the journey's `run` again from the top; every step that the
earlier run finished returns its recorded result at once (no timer, no activity), until the
journal runs out. A step that was under way (a wait or sleep) resumes with the deadline it
had. Steps must come in the same order as before: a journey edited in between fails with
`JourneyDefinitionError` naming the step (journeys change behind `patched`, see CONTRIBUTING).
Pure and sandbox-safe.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.journey.vocabulary import JourneyDefinitionError
from schemas.journeys import StepRecord


class Journal:
    """Recorded steps (carried in) and the ones this run adds."""

    def __init__(self, carried: Iterable[StepRecord] = ()) -> None:
        self._steps: list[StepRecord] = list(carried)
        self._cursor = 0

    def recorded(self, kind: str, name: str) -> StepRecord | None:
        """The record of this step from the earlier run, or None when the step is new.

        A finished record is the step's result; an open one (`done` False) is the step the
        earlier run was in, to resume with its deadline. Either way the cursor moves on.
        """
        if self._cursor >= len(self._steps):
            return None
        record = self._steps[self._cursor]
        if (record.kind, record.name) != (kind, name):
            raise JourneyDefinitionError(
                f"after continue-as-new, step {self._cursor + 1} is {kind} {name!r}, but the "
                f"run recorded {record.kind} {record.name!r}: change journeys behind patched()"
            )
        self._cursor += 1
        return record

    def start(self, record: StepRecord) -> StepRecord:
        """Record a new step (live); the caller marks it `done` with its result."""
        self._steps.append(record)
        self._cursor = len(self._steps)
        return record

    def names(self, kind: str) -> set[str]:
        """The names of every recorded step of `kind` (send steps must be unique)."""
        return {r.name for r in self._steps[: self._cursor] if r.kind == kind}

    def steps(self) -> list[StepRecord]:
        return list(self._steps)
