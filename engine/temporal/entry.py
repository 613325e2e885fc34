"""Entering a user into a journey: the one signal-with-start the router and broadcasts share.

The workflow id is deterministic (`journey/{name}/{uid}[/{key}]`) and the conflict policy
USE_EXISTING, so entering a user whose run is open only signals that run with the entry
event (which it ignores if it saw that event's `message_id` before): a repeated entry is a
no-op. `memo` marks who entered the run (a broadcast names itself), so a caller that lost
track after a crash can tell its own entry from someone else's (`entered_by`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from engine.journey import ALWAYS, EVENT_SIGNAL, SA_JOURNEY, SA_USER, JourneySpec
from engine.store.models import JourneyRun
from schemas.common import RunStatus
from schemas.events import JourneyEvent
from schemas.journeys import JourneyEntry

RPC_TIMEOUT = timedelta(seconds=5)
TRANSACTIONAL_PRIORITY = Priority(priority_key=1)
"""A transactional journey's runs: ahead of the default (3) on every task queue."""


def journey_queue(spec: JourneySpec, task_queue: str) -> str:
    """The task queue a journey's runs start on: transactional journeys on `<queue>.tx`,
    served by workers of their own (`engine.app.worker.build_workers`), so a marketing
    burst's workflow tasks and local activities never hold the slots an OTP needs."""
    return transactional_queue(task_queue) if spec.transactional else task_queue


def transactional_queue(task_queue: str) -> str:
    """`<queue>.tx`: where the transactional journeys of `task_queue` run."""
    return f"{task_queue}.tx"


ENTRY_MEMO = "nudge_entry"
"""Memo key naming what entered a run (e.g. `broadcast/b_...`)."""


def reentry_allows(spec: JourneySpec, last: JourneyRun | None, at: datetime) -> bool:
    """Whether an entry at `at` may start a new run, given the user's last run."""
    if last is None:
        return True
    if last.status == RunStatus.OPEN:
        return False
    if spec.reentry is None:
        return False
    if spec.reentry == ALWAYS:
        return True
    assert isinstance(spec.reentry, timedelta)
    return at - last.started_at >= spec.reentry


async def enter(
    client: Client,
    *,
    spec: JourneySpec,
    workflow_id: str,
    user_id: str,
    key: str | None,
    event: JourneyEvent,
    settings: dict[str, Any],
    task_queue: str,
    search_attributes: bool = True,
    memo: dict[str, Any] | None = None,
    rpc_timeout: timedelta = RPC_TIMEOUT,
) -> str | None:
    """Enter the user (or signal the run that is already there); the run id, or None
    when Temporal refuses a second run of a once-only journey."""
    entry = JourneyEntry(
        journey=spec.name,
        user_id=user_id,
        key=key,
        event=event,
        settings=settings,
        search_attributes=search_attributes,
    )
    attributes = (
        TypedSearchAttributes(
            [SearchAttributePair(SA_JOURNEY, spec.name), SearchAttributePair(SA_USER, user_id)]
        )
        if search_attributes
        else None
    )
    try:
        handle = await client.start_workflow(
            spec.name,
            entry,
            id=workflow_id,
            task_queue=journey_queue(spec, task_queue),
            start_signal=EVENT_SIGNAL,
            start_signal_args=[event],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # Once per user ever: Temporal too refuses a second run (while it remembers).
            id_reuse_policy=(
                WorkflowIDReusePolicy.REJECT_DUPLICATE
                if spec.reentry is None
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE
            ),
            search_attributes=attributes,
            memo=memo,
            rpc_timeout=rpc_timeout,
            priority=TRANSACTIONAL_PRIORITY if spec.transactional else Priority.default,
        )
    except WorkflowAlreadyStartedError:
        return None
    return handle.result_run_id


async def entered_by(client: Client, workflow_id: str) -> tuple[str | None, str | None]:
    """(memo entry, run id) of the workflow's latest run; (None, None) if there is none."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None, None
        raise
    memo = await described.memo()
    value = memo.get(ENTRY_MEMO)
    return (value if isinstance(value, str) else None), described.run_id
