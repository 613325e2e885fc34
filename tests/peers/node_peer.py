"""The npm `smpp` SMSC (`node_smpp/smsc.js`) as a subprocess: an independent SMPP stack.

    peer = NodeSmscPeer(password="secret", enquire_ms=300)
    await peer.start()      # runs `npm install` once if node_modules is missing
    ...                     # peer.port; await peer.wait_for("submit"); await peer.send_mo(...)
    await peer.stop()       # kills the node process itself (not a shell around it)

Every line the peer prints is a JSON event; `events` keeps them all in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node_smpp"


async def ensure_node_modules() -> None:
    """`npm install` in tests/peers/node_smpp unless `smpp` is already installed there."""
    if (NODE_DIR / "node_modules" / "smpp" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the node SMPP peer needs node and npm")
    proc = await asyncio.create_subprocess_exec(
        npm,
        "install",
        "--no-audit",
        "--no-fund",
        "--no-package-lock",
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    if proc.returncode != 0:
        raise RuntimeError(f"npm install failed in {NODE_DIR}:\n{out.decode(errors='replace')}")


@dataclass
class NodeSmscPeer:
    """Checks `password` (ESME_RBINDFAIL otherwise), sends enquire_link every `enquire_ms`
    (0 = never), answers submits with ids `n1`, `n2`, ... and a receipt for each."""

    password: str = "secret"
    enquire_ms: int = 0
    port: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        await ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed")
        # exec node directly, so the PID we hold (and kill) is node's own.
        self._proc = await asyncio.create_subprocess_exec(
            node,
            "smsc.js",
            str(self.port),
            self.password,
            cwd=NODE_DIR,
            env={**os.environ, "ENQUIRE_MS": str(self.enquire_ms)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read(self._proc))
        try:
            ready = await self.wait_for("listening")
        except BaseException:
            await self.stop()
            raise
        self.port = int(ready["port"])

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def send_mo(self, from_number: str, to: str, text: str) -> None:
        """Have the SMSC push a mobile-originated SMS to every bound session."""
        assert self._proc is not None and self._proc.stdin is not None
        line = json.dumps({"mo": {"from": from_number, "to": to, "text": text}})
        self._proc.stdin.write(line.encode() + b"\n")
        await self._proc.stdin.drain()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    async def wait_for(
        self,
        kind: str,
        count: int = 1,
        *,
        within: float = 60.0,
    ) -> dict[str, Any]:
        """The `count`-th event of this kind (waiting for it up to `within` seconds)."""
        async with asyncio.timeout(within):
            while len(self.of(kind)) < count:
                if self._proc is None or self._proc.returncode is not None:
                    raise RuntimeError(f"node SMSC exited; events so far: {self.events}")
                self._changed.clear()
                await self._changed.wait()
        return self.of(kind)[count - 1]

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))
            self._changed.set()
        self._changed.set()
