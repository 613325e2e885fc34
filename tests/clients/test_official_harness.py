"""The harness against a recording server: what the official clients send, and what they do
with error answers. The assertions pin each client's behaviour a server has to live with,
so a client upgrade that changes it fails here first."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.clients.official import (
    CallType,
    SendReport,
    mixed_calls,
    send_analytics_node,
    send_rudder_python,
    send_segment_python,
)

WRITE_KEY = "wk_test_harness"
TIMEOUT_S = 20.0
OK_BODY = b'{"success": true}'
PROBLEM = {
    "type": "urn:nudge:problem:invalid-batch",
    "title": "Some batch items are not valid",
    "status": 400,
    "detail": "rejected items: batch[3]",
}
SEGMENT_STYLE = {**PROBLEM, "code": "invalid_request", "message": "batch[3] is not valid"}


@dataclass(frozen=True, kw_only=True)
class Answer:
    status: int = 200
    body: bytes = OK_BODY
    content_type: str = "application/json"


def problem(status: int, body: dict[str, Any] | None = None) -> Answer:
    document = {**(body or PROBLEM), "status": status}
    return Answer(
        status=status, body=json.dumps(document).encode(), content_type="application/problem+json"
    )


@dataclass(frozen=True, kw_only=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    raw: bytes
    """The body as it came over the wire (not decompressed)."""
    status: int
    """What the server answered."""

    @property
    def body(self) -> Any:
        data = (
            gzip.decompress(self.raw)
            if self.headers.get("content-encoding") == "gzip"
            else self.raw
        )
        return json.loads(data)

    @property
    def messages(self) -> list[dict[str, Any]]:
        batch = self.body.get("batch")
        return list(batch) if isinstance(batch, list) else [self.body]


@dataclass
class RecordingSegmentServer:
    """Answers `answers` in order, then 200 `{"success": true}`; records every request raw.

    Runs in the caller's loop on 127.0.0.1 with a free port, so the clients must send from
    another thread or process (the harness does). No waiting on it is needed: a request is
    recorded before it is answered, and the senders return only after the last answer."""

    answers: Sequence[Answer] = ()
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # auto_decompress=False: keep the wire bytes, to see whether a client gzipped.
        self._runner = web.AppRunner(app, auto_decompress=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> RecordingSegmentServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        index = len(self.requests)
        answer = self.answers[index] if index < len(self.answers) else Answer()
        recorded = Recorded(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            raw=await request.read(),
            status=answer.status,
        )
        self.requests.append(recorded)  # before answering: the client's flush implies it
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type
        )

    def message_ids(self) -> list[str]:
        return [m["messageId"] for r in self.requests for m in r.messages]


Sender = Callable[[str, str, str], Awaitable[SendReport]]


def _segment(base_url: str, key: str, user_id: str) -> Awaitable[SendReport]:
    return send_segment_python(base_url, key, user_id=user_id, timeout=TIMEOUT_S)


def _segment_gzip(base_url: str, key: str, user_id: str) -> Awaitable[SendReport]:
    return send_segment_python(base_url, key, user_id=user_id, gzip=True, timeout=TIMEOUT_S)


def _rudder(base_url: str, key: str, user_id: str) -> Awaitable[SendReport]:
    return send_rudder_python(base_url, key, user_id=user_id, timeout=TIMEOUT_S)


def _node(base_url: str, key: str, user_id: str) -> Awaitable[SendReport]:
    return send_analytics_node(base_url, key, user_id=user_id, timeout=TIMEOUT_S)


SENDERS: dict[str, Sender] = {
    "segment": _segment,
    "segment-gzip": _segment_gzip,
    "rudder": _rudder,
    "node": _node,
}


async def _send(name: str, server: RecordingSegmentServer, user_id: str) -> SendReport:
    return await SENDERS[name](server.base_url, WRITE_KEY, user_id)


@dataclass(frozen=True)
class Wire:
    """What a client puts on the wire by default."""

    gzip: bool
    write_key_in_body: bool
    agent: str
    library: str


PY, NODE = "analytics-python", "@segment/analytics-node"
WIRE = {
    "segment": Wire(False, True, "analytics-python/", PY),
    "segment-gzip": Wire(True, True, "analytics-python/", PY),  # gzip=True
    "rudder": Wire(True, False, "analytics-python/", PY),  # rudder names itself so too
    "node": Wire(False, True, "analytics-node-next/", NODE),
}


@pytest.mark.parametrize("name", list(SENDERS))
async def test_every_call_type_arrives(name: str) -> None:
    user_id = f"u-arrive-{name}"
    async with RecordingSegmentServer() as recorder:
        report = await _send(name, recorder, user_id)
    report.raise_for_errors()

    expected = [c.message_id for c in mixed_calls(user_id=user_id)]
    assert sorted(recorder.message_ids()) == sorted(expected)  # each once: no retry needed
    wire = WIRE[name]
    basic = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    for req in recorder.requests:
        assert (req.method, req.path) == ("POST", "/v1/batch")
        assert req.headers["authorization"] == basic
        assert req.headers["content-type"] == "application/json"
        assert req.headers["user-agent"].startswith(wire.agent)
        assert (req.headers.get("content-encoding") == "gzip") is wire.gzip
        assert req.raw.startswith(b"\x1f\x8b") is wire.gzip
        assert ("writeKey" in req.body) is wire.write_key_in_body
        assert "sentAt" in req.body
    by_type = {m["type"]: m for r in recorder.requests for m in r.messages}
    assert set(by_type) == {t.value for t in CallType}
    for message in by_type.values():
        assert message["context"]["library"]["name"] == wire.library
        assert "timestamp" in message and "originalTimestamp" not in message
    identify = by_type["identify"]
    assert identify["context"]["timezone"] == "Europe/Berlin"
    assert identify["anonymousId"] == f"anon-{user_id}"
    if name == "rudder":  # rudder moves identify's traits into context.traits
        assert "traits" not in identify and identify["context"]["traits"]["plan"] == "pro"
    else:
        assert identify["traits"]["plan"] == "pro"
    assert by_type["group"]["traits"]["employees"] == 120
    assert by_type["alias"]["previousId"] == f"anon-{user_id}"
    assert by_type["page"]["name"] == "Pricing" and by_type["page"]["category"] == "Docs"
    assert by_type["screen"]["name"] == "Checkout"


def _statuses(server: RecordingSegmentServer) -> list[int]:
    return [r.status for r in server.requests]


def _all_failed(report: SendReport, user_id: str, status: int) -> bool:
    expected = {c.message_id for c in mixed_calls(user_id=user_id)}
    return report.failed_message_ids == expected and status in {e.status for e in report.errors}


@pytest.mark.parametrize("with_code", [False, True], ids=["rfc9457", "rfc9457+code"])
@pytest.mark.parametrize("name", ["segment", "rudder", "node"])
async def test_400_problem(name: str, with_code: bool) -> None:
    """A 400 drops the whole batch, except that rudder retries when the JSON body lacks
    Segment's `code`/`message` (its parser raises KeyError, which it treats as transient)."""
    user_id = f"u-400-{name}-{with_code}"
    answer = problem(400, SEGMENT_STYLE if with_code else PROBLEM)
    async with RecordingSegmentServer(answers=[answer]) as recorder:
        report = await _send(name, recorder, user_id)
    if name == "rudder" and not with_code:
        assert _statuses(recorder) == [400, 200]
        assert report.errors == ()  # the retry succeeded: the client said nothing
        return
    assert _statuses(recorder) == [400]  # not retried
    assert _all_failed(report, user_id, 400)
    if name == "segment":
        detail = report.errors[0].detail
        assert ("invalid_request" in detail) is with_code
        assert ("unknown" in detail) is not with_code


@pytest.mark.parametrize("status", [500, 429])
@pytest.mark.parametrize("name", ["segment", "rudder", "node"])
async def test_transient_answer_is_retried(name: str, status: int) -> None:
    user_id = f"u-retry-{name}-{status}"
    async with RecordingSegmentServer(answers=[problem(status)]) as recorder:
        report = await _send(name, recorder, user_id)
    report.raise_for_errors()
    first, second = recorder.requests
    assert (first.status, second.status) == (status, 200)
    assert [m["messageId"] for m in first.messages] == [m["messageId"] for m in second.messages]
    # segment-python and analytics-node say it is a retry; rudder does not.
    assert second.headers.get("x-retry-count") == (None if name == "rudder" else "1")
    if name == "node":
        assert report.statuses == (status, 200) and report.attempts == 2


@pytest.mark.parametrize("name", ["segment", "rudder", "node"])
async def test_success_other_than_200(name: str) -> None:
    """rudder counts only 200 as success: a 202 makes it send the same batch again."""
    async with RecordingSegmentServer(answers=[Answer(status=202)]) as recorder:
        report = await _send(name, recorder, f"u-202-{name}")
    report.raise_for_errors()
    assert _statuses(recorder) == ([202, 200] if name == "rudder" else [202])
