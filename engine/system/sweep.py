"""`DueTriggerSweep`: fires inactivity and date triggers when they fall due.

Why a sweep and not a durable timer per user. At 1 M users with `Inactive("App Opened",
for_=14d)`, a timer per user means 1 M workflows open for good (~50-75 KB of server state
each on Temporal's persistence: tens of GB) and a signal to reset the timer on every
`App Opened`, the most frequent event there is: Temporal's whole signal budget spent on
"nothing happened yet". The sweep instead keeps one row per (journey, user) in Postgres,
upserted by the router in the batch it already writes (one statement per batch), and one
workflow per deployment that reads only the rows falling due, through a partial index on
unfired rows: a round costs what is due, not what is stored, and an idle user costs one
small row. Date triggers (a birthday, an appointment) are the same shape: a row per planned
entry. Latency is bounded by `[triggers] sweep_every` (1 minute by default): the workflow
sleeps until the earliest row falls due or that long, whichever is sooner.

Why a long-lived workflow rather than a Temporal Schedule: the workflow sleeps until the
next row is due (a Schedule fires on a fixed cadence whether anything is due or not), a
crashed round is retried by Temporal, and its durable timer runs in virtual time under the
test kit. It continues as new every `ROUNDS` rounds, so its history stays small. One sweep
per task queue (`workflow_id`), started idempotently by every worker; the router signals it
when it plans an entry due before the sweep's next look.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from schemas.triggers import SweepPlanned, SweepRequest, SweepResult, SweepState

ROUNDS = 200
"""Rounds per run before continuing as new (each round: ~5 history events)."""
RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
PLANNED_SIGNAL = "planned"


def workflow_id(task_queue: str) -> str:
    """One sweep per task queue (a deployment)."""
    return f"nudge/sweep/{task_queue}"


@workflow.defn(name="nudge.sweep")
class DueTriggerSweep:
    def __init__(self) -> None:
        self._wake_at: datetime | None = None
        self._hint: datetime | None = None
        self._sooner = False

    @workflow.signal(name=PLANNED_SIGNAL)
    def planned(self, planned: SweepPlanned) -> None:
        """The router planned an entry; wake early if it falls due before the next look
        (one planned while a round runs is remembered for the sleep after it)."""
        if self._hint is None or planned.due_at < self._hint:
            self._hint = planned.due_at
        if self._wake_at is not None and planned.due_at < self._wake_at:
            self._sooner = True

    @workflow.run
    async def run(self, state: SweepState) -> None:
        profiles = state.profiles
        for _ in range(ROUNDS):
            self._hint = None  # the round sees every plan committed before it starts
            result = await workflow.execute_activity(
                "nudge.sweep",
                SweepRequest(at=workflow.now(), profiles=profiles),
                result_type=SweepResult,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RETRY,
            )
            profiles = result.profiles
            if result.more:
                continue  # a full batch: more is due right now
            now = workflow.now()
            wake = now + result.every
            for sooner in (result.next_due, self._hint):
                if sooner is not None:
                    wake = min(wake, sooner)
            # A durable timer (at least a second, so a row due "now" is not spun on), cut
            # short when the router plans something sooner.
            self._wake_at, self._sooner = wake, False
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._sooner, timeout=max(wake - now, timedelta(seconds=1))
                )
            self._wake_at = None
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(SweepState(rounds=state.rounds + ROUNDS, profiles=profiles))
