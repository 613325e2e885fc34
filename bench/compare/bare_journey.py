"""The bare baseline's journey: what Temporal alone costs for "an event starts a run".

Plain `temporalio`, the default data converter, the default sandbox, no database. A run
is started by signal-with-start (`EVENT_SIGNAL`, like Nudge's router); with `activity`, it
runs one activity that returns the wall-clock time it started at (`time.time()`), which
the run returns; otherwise the run ends at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

WORKFLOW = "BareJourney"
EVENT_SIGNAL = "event"
ACTIVITY = "bare.stamp"


@dataclass
class BareEntry:
    """The start argument: the event (as a dict, like a journey's entry event) and
    whether the run executes its one activity."""

    event: dict[str, Any] = field(default_factory=dict)
    activity: bool = False


@activity.defn(name=ACTIVITY)
async def stamp() -> float:
    """The wall-clock time (seconds since the epoch) the activity started."""
    return time.time()


@workflow.defn(name=WORKFLOW)
class BareJourney:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @workflow.signal(name=EVENT_SIGNAL)
    def event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    @workflow.run
    async def run(self, entry: BareEntry) -> float | None:
        if not entry.activity:
            return None
        started: float = await workflow.execute_activity(
            stamp, start_to_close_timeout=timedelta(minutes=2)
        )
        return started


async def start_run(
    client: Client, workflow_id: str, *, message_id: str, task_queue: str
) -> WorkflowHandle[Any, Any]:
    """Signal-with-start one run with its activity for one "Cart Touched" event; its
    result is the time the activity started."""
    event = {"message_id": message_id, "name": "Cart Touched"}
    return await client.start_workflow(
        WORKFLOW,
        BareEntry(event=event, activity=True),
        id=workflow_id,
        task_queue=task_queue,
        start_signal=EVENT_SIGNAL,
        start_signal_args=[event],
    )
