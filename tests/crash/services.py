"""Child processes the matrix can SIGKILL and start again, and a supervisor for the rest.

A `Service` is one long-running process (postmaster, Temporal dev server, `nudge api`,
`nudge router`, `nudge worker`) with the command that starts it. The matrix kills its target
with SIGKILL and starts it again on the same state. Any other service that exits on its own
is a finding: the `Supervisor` records the exit and starts the process again a second later,
as systemd `Restart=always` or compose `restart: unless-stopped` would; nothing that is still
running is ever restarted behind the product's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("crash")

Spawn = Callable[[], Awaitable[asyncio.subprocess.Process]]
Ready = Callable[[], Awaitable[bool]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Exit:
    """A service that exited without being told to: when (monotonic seconds) and its code."""

    service: str
    at: float
    code: int | None


@dataclass
class Service:
    """One child process: `spawn` starts it (again), `ready` says it answers (optional)."""

    name: str
    spawn: Spawn
    ready: Ready | None = None
    proc: asyncio.subprocess.Process | None = None
    held: bool = False
    """Down on purpose (killed by the matrix, or stopping): the supervisor leaves it alone."""
    starts: int = 0
    kills: int = 0
    exits: list[Exit] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, *, timeout: float = 300.0) -> None:
        """Start the process and wait until `ready` holds. A process that exits before it
        is ready (e.g. a postmaster whose old backends still hold shared memory) is started
        again, until `timeout` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.proc = await self.spawn()
            self.starts += 1
            while self.running and not await self._ready():
                if loop.time() > deadline:
                    raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f}s")
                await asyncio.sleep(0.25)
            if self.running:
                self.held = False
                return
            log.warning("%s exited (%s) while starting; trying again", self.name, self.code)
            if loop.time() > deadline:
                raise RuntimeError(f"{self.name} keeps exiting while starting")
            await asyncio.sleep(1.0)

    async def _ready(self) -> bool:
        if self.ready is None:
            return True
        try:
            return await self.ready()
        except Exception:  # not answering yet
            return False

    @property
    def code(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def kill(self) -> None:
        """SIGKILL the process (not its children: a postmaster's backends notice on their
        own) and wait until it is gone."""
        self.held = True
        if self.proc is None or not self.running:
            return
        self.kills += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, *, grace: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds: the end of a run."""
        self.held = True
        if self.proc is None or not self.running:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class Supervisor:
    """Restarts services that exited on their own (after `delay` seconds) and records it."""

    def __init__(self, services: list[Service], *, delay: float = 1.0) -> None:
        self.services = services
        self.delay = delay
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    @property
    def exits(self) -> list[Exit]:
        return [e for s in self.services for e in s.exits]

    async def _watch(self) -> None:
        while True:
            for service in self.services:
                if service.held or service.proc is None or service.running:
                    continue
                service.exits.append(
                    Exit(service.name, time.monotonic() - self.started, service.code)
                )
                log.warning(
                    "%s exited on its own (code %s): restarting", service.name, service.code
                )
                await asyncio.sleep(self.delay)
                try:
                    await service.start()
                except RuntimeError as exc:
                    log.error("%s", exc)
            await asyncio.sleep(0.5)

    def __enter__(self) -> Supervisor:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def open_log(path: Path) -> int:
    """A file descriptor appending to `path`, for a child's stdout and stderr."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
