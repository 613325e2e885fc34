"""`nudge dev` records where it runs; the other commands find it there; it serves the
console and the offline docs; stopping it removes the record."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.kit.waiting import eventually


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


async def _nudge(*args: str, env: dict[str, str]) -> tuple[int, str]:
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from engine.cli import main; main()",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await done.communicate()
    return done.returncode or 0, output.decode()


async def test_commands_find_a_running_nudge_dev(tmp_path: Path) -> None:
    api, frontend, ui = _free_ports(3)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    dev = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from engine.cli import main; main()",
        *("dev", "--state-dir", str(state), "--api-port", str(api)),
        *("--temporal-port", str(frontend), "--ui-port", str(ui)),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        async def recorded() -> dict[str, object] | None:
            if dev.returncode is not None:
                pytest.fail(f"nudge dev exited with {dev.returncode}")
            path = state / "instance.json"
            return json.loads(path.read_text()) if path.exists() else None

        instance = await eventually(recorded, timeout=120)
        assert instance["api_port"] == api
        assert instance["temporal_address"] == f"127.0.0.1:{frontend}"
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        near = {**env, "NUDGE_STATE_DIR": str(state)}
        code, output = await _nudge("emit", "Signed Up", "--user", "ann", env=near)
        assert code == 0, output
        code, output = await _nudge("--state-dir", str(state), "timeline", "ann", env=env)
        assert code == 0 and "Signed Up" in output, output
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api}") as http:
            login = await http.get("/ui/login")
            assert login.status_code == 200 and "Sign in" in login.text
            assert (await http.get("/docs")).status_code == 200
    finally:
        with contextlib.suppress(ProcessLookupError):
            dev.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(dev.wait(), timeout=60)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(dev.pid, signal.SIGKILL)
            await dev.wait()
    assert not (state / "instance.json").exists()
