"""The benchmark's child processes (`bench.compare.children`): an API, a worker, a router,
each started for one sample and stopped after it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from bench._common import Child, DevServer, child_process, listening_socket

CHILDREN = "bench.compare.children"


@contextlib.asynccontextmanager
async def api_child(
    kind: str, schema: str, *, target: str | None = None, router: bool = False
) -> AsyncIterator[tuple[str, Child]]:
    """An API child process (`bench.compare.children api`); yields its base URL once
    `/healthz` answers."""
    sock = listening_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    args = ["api", "--kind", kind, "--fd", str(sock.fileno()), "--schema", schema]
    if target is not None:
        args += ["--target", target]
    if router:
        args.append("--router")
    try:
        async with child_process(CHILDREN, *args, pass_fds=[sock.fileno()]) as child:
            sock.close()  # the child holds its own copy
            async with httpx.AsyncClient(base_url=base) as http:
                (await http.get("/healthz", timeout=60)).raise_for_status()
            yield base, child
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def worker_child(kind: str, server: DevServer, schema: str = "") -> AsyncIterator[Child]:
    """A worker (`bench.compare.children worker`) on `server`."""
    args = ["worker", "--kind", kind, "--target", server.target, "--schema", schema]
    async with child_process(CHILDREN, *args) as child:
        yield child


@contextlib.asynccontextmanager
async def router_child(server: DevServer, schema: str) -> AsyncIterator[Child]:
    """A router of its own (`bench.compare.children router`) on `server`."""
    args = ["router", "--kind", "nudge", "--target", server.target, "--schema", schema]
    async with child_process(CHILDREN, *args) as child:
        yield child
