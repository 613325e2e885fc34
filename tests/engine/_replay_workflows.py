"""Two versions of one tiny workflow for the replay tests (kept apart: the sandbox
re-imports this module for every run, so it imports nothing heavy)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.exceptions import ActivityError, ApplicationError

NAME = "replay_probe"


class ProbeInput(BaseModel):
    phone: str


@activity.defn
async def check_number(phone: str) -> str:
    """Fails with the number in its message, so failures must be encrypted too."""
    raise ApplicationError(f"undeliverable: {phone}", non_retryable=True)


@activity.defn
async def echo(text: str) -> str:
    return text


_TIMEOUT = timedelta(seconds=10)


@workflow.defn(name=NAME)
class ProbeV1:
    @workflow.run
    async def run(self, entry: ProbeInput) -> str:
        with contextlib.suppress(ActivityError):
            await workflow.execute_activity(
                check_number, entry.phone, start_to_close_timeout=_TIMEOUT
            )
        echoed: str = await workflow.execute_activity(
            echo, entry.phone, start_to_close_timeout=_TIMEOUT
        )
        await workflow.sleep(timedelta(milliseconds=10))
        return echoed


@workflow.defn(name=NAME)
class ProbeV2:
    """V1 with a timer inserted before the first activity and no `workflow.patched`."""

    @workflow.run
    async def run(self, entry: ProbeInput) -> str:
        await workflow.sleep(timedelta(milliseconds=10))
        with contextlib.suppress(ActivityError):
            await workflow.execute_activity(
                check_number, entry.phone, start_to_close_timeout=_TIMEOUT
            )
        echoed: str = await workflow.execute_activity(
            echo, entry.phone, start_to_close_timeout=_TIMEOUT
        )
        return echoed


@workflow.defn(name="some_other_journey")
class Unrelated:
    @workflow.run
    async def run(self) -> None:
        return None
