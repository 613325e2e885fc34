"""Waiting on conditions, never on the clock: `eventually` polls a probe until it holds.

A test on this machine may run under heavy load, so nothing here assumes the code under
test is fast. `timeout` is only how long to wait before calling the test failed; no
assertion depends on how much of it was used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

T = TypeVar("T")

DEADLINE = 60.0
"""Seconds a condition may take before the test fails (generous: the machine is shared)."""


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = DEADLINE, interval: float = 0.1
) -> T:
    """Poll `probe` until it returns something truthy, and return that; fail after `timeout`
    seconds with the last value seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last:
            return last
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


async def idle(handle: WorkflowHandle[Any, Any]) -> bool:
    """The run has ended, or has no workflow task and no activity in flight (it waits on a
    timer or a signal)."""
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return True
    raw = desc.raw_description
    return not raw.HasField("pending_workflow_task") and not raw.pending_activities
