"""The official Segment-protocol clients, unmodified, sending one user's mixed calls.

    calls = mixed_calls(user_id="u-1")              # identify, track, page, screen, group, alias
    report = await send_segment_python(base_url, write_key, user_id="u-1", gzip=True)
    report = await send_rudder_python(base_url, write_key, user_id="u-1")
    report = await send_analytics_node(base_url, write_key, user_id="u-1")
    report.raise_for_errors()                       # what the client itself said went wrong

Each sender configures only the host, the write key, the gzip flag (segment-python) and a
short flush interval; batching, retries, headers and payload shape are the client's own
defaults. It returns once the client says every call was sent or given up on, so a test
can then look for every `messageId` on the server.

What the clients say about failures differs: segment-python and analytics-node report a
batch they gave up on; rudder-sdk-python retries silently (its `backoff` logger, at INFO)
and only reports once it gives up, up to ~17 minutes later with its default 10 retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from rudderstack.analytics.client import Client as RudderClient  # type: ignore[import-untyped]
from rudderstack.analytics.version import VERSION as RUDDER_VERSION  # type: ignore[import-untyped]
from segment.analytics.client import Client as SegmentClient  # type: ignore[import-untyped]
from segment.analytics.version import VERSION as SEGMENT_VERSION  # type: ignore[import-untyped]

NODE_DIR = Path(__file__).parent / "node"
SEND_SCRIPT = NODE_DIR / "send.mjs"
FLUSH_INTERVAL_S = 0.1
"""How long the clients wait to fill a batch (defaults: 0.5 s Python, 10 s node)."""
DEFAULT_TIMEOUT_S = 60.0

T = TypeVar("T")
JSON = dict[str, Any]
OnError = Callable[[Exception, list[JSON]], None]


class CallType(StrEnum):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


@dataclass(frozen=True, kw_only=True)
class Call:
    """One Segment call, client-neutral; each sender maps it onto its client's method."""

    type: CallType
    message_id: str
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None
    """`track` only."""
    name: str | None = None
    """`page` and `screen`."""
    category: str | None = None
    """`page` and `screen`."""
    group_id: str | None = None
    previous_id: str | None = None
    """`alias` only: the id being merged into `user_id`."""
    properties: Mapping[str, Any] = field(default_factory=dict)
    traits: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)

    def python_kwargs(self) -> JSON:
        """Keyword arguments of the Python clients' method `self.type` (both share them).

        Fresh copies every time: both clients write into `context` (and rudder moves
        identify's traits into it)."""
        kwargs: JSON = {"message_id": self.message_id, "context": _copy(self.context)}
        if self.type is CallType.ALIAS:
            return kwargs | {"previous_id": self.previous_id, "user_id": self.user_id}
        kwargs |= {"user_id": self.user_id, "anonymous_id": self.anonymous_id}
        if self.type in (CallType.IDENTIFY, CallType.GROUP):
            kwargs["traits"] = _copy(self.traits)
        else:
            kwargs["properties"] = _copy(self.properties)
        if self.type is CallType.TRACK:
            kwargs["event"] = self.event
        elif self.type is CallType.GROUP:
            kwargs["group_id"] = self.group_id
        elif self.type in (CallType.PAGE, CallType.SCREEN):
            kwargs |= {"name": self.name, "category": self.category}
        return kwargs

    def segment_fields(self) -> JSON:
        """The call as Segment spells it (`userId`, `messageId`, ...), unset fields left out."""
        fields = {
            "type": self.type.value,
            "messageId": self.message_id,
            "userId": self.user_id,
            "anonymousId": self.anonymous_id,
            "event": self.event,
            "name": self.name,
            "category": self.category,
            "groupId": self.group_id,
            "previousId": self.previous_id,
            "properties": dict(self.properties) if self.properties else None,
            "traits": dict(self.traits) if self.traits else None,
            "context": dict(self.context) if self.context else None,
        }
        return {k: v for k, v in fields.items() if v is not None}


def _copy(value: Mapping[str, Any]) -> JSON:
    return copy.deepcopy(dict(value))


def mixed_calls(*, user_id: str) -> list[Call]:
    """All six call types for one user; message ids are `{user_id}:{n}:{type}`."""
    anonymous_id = f"anon-{user_id}"

    def mid(n: int, kind: CallType) -> str:
        return f"{user_id}:{n}:{kind.value}"

    return [
        Call(
            type=CallType.IDENTIFY,
            message_id=mid(1, CallType.IDENTIFY),
            user_id=user_id,
            anonymous_id=anonymous_id,
            traits={"email": f"{user_id}@example.com", "firstName": "Ada", "plan": "pro"},
            context={"timezone": "Europe/Berlin", "locale": "de-DE"},
        ),
        Call(
            type=CallType.TRACK,
            message_id=mid(2, CallType.TRACK),
            user_id=user_id,
            event="Cart Updated",
            properties={"cart_id": f"cart-{user_id}", "total": 42.5, "currency": "EUR"},
        ),
        Call(
            type=CallType.PAGE,
            message_id=mid(3, CallType.PAGE),
            user_id=user_id,
            name="Pricing",
            category="Docs",
            properties={"path": "/pricing", "url": "https://example.com/pricing"},
        ),
        Call(
            type=CallType.SCREEN,
            message_id=mid(4, CallType.SCREEN),
            user_id=user_id,
            name="Checkout",
            category="Shop",
            properties={"step": 2},
        ),
        Call(
            type=CallType.GROUP,
            message_id=mid(5, CallType.GROUP),
            user_id=user_id,
            group_id=f"org-{user_id}",
            traits={"name": "Acme GmbH", "plan": "enterprise", "employees": 120},
        ),
        Call(
            type=CallType.ALIAS,
            message_id=mid(6, CallType.ALIAS),
            user_id=user_id,
            previous_id=anonymous_id,
        ),
    ]


MIXED_CALLS: list[Call] = mixed_calls(user_id="user-example")
"""The shape of `mixed_calls` for a reader; senders build it for their own `user_id`."""


@dataclass(frozen=True, kw_only=True)
class ClientError:
    """One failure as the client reported it (Python `on_error`, node `error` event)."""

    kind: str
    """The exception's class (`APIError`, `KeyError`, ...) or node's error code."""
    detail: str
    status: int | None
    message_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SendReport:
    """What the client itself said about one send."""

    client: str
    version: str
    message_ids: tuple[str, ...]
    """Every call handed to the client, in order."""
    errors: tuple[ClientError, ...] = ()
    statuses: tuple[int, ...] = ()
    """node: every HTTP response; Python: only those of failed uploads (`APIError.status`)."""
    attempts: int | None = None
    """HTTP requests made, retries included (node only; Python clients do not say)."""
    logged: tuple[str, ...] = ()
    """The library's own warnings and errors (Python loggers `segment`, `rudderstack`)."""

    @property
    def failed_message_ids(self) -> frozenset[str]:
        return frozenset(m for e in self.errors for m in e.message_ids)

    def raise_for_errors(self) -> None:
        if self.errors:
            raise ClientReportedError(self)


class ClientReportedError(AssertionError):
    """The client reported failures; the report is on `.report`."""

    def __init__(self, report: SendReport) -> None:
        super().__init__(f"{report.client} {report.version} reported: {list(report.errors)}")
        self.report = report


class ClientTimeout(TimeoutError):
    """The client did not finish flushing in time (it may still be retrying)."""


async def send_segment_python(
    base_url: str,
    write_key: str,
    *,
    user_id: str,
    gzip: bool = False,
    calls: Sequence[Call] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> SendReport:
    """Send `calls` (default: `mixed_calls(user_id=...)`) with `segment-analytics-python`
    (`host=base_url`), then `flush()` and `join()` its consumer thread.

    Returns once the client has uploaded or given up on every call; raises `ClientTimeout`
    after `timeout` seconds (the client's thread may then still be retrying)."""

    def make(on_error: OnError) -> Any:
        return SegmentClient(
            write_key, host=base_url, gzip=gzip, on_error=on_error, upload_interval=FLUSH_INTERVAL_S
        )

    return await _send_python(
        client="segment-analytics-python",
        version=SEGMENT_VERSION,
        logger="segment",
        make=make,
        calls=list(calls) if calls is not None else mixed_calls(user_id=user_id),
        timeout=timeout,
    )


async def send_rudder_python(
    base_url: str,
    write_key: str,
    *,
    user_id: str,
    calls: Sequence[Call] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> SendReport:
    """Like `send_segment_python`, with `rudder-sdk-python` (`host=base_url`, the
    `dataPlaneUrl`), left at its default `gzip=True`."""

    def make(on_error: OnError) -> Any:
        return RudderClient(
            write_key, host=base_url, on_error=on_error, upload_interval=FLUSH_INTERVAL_S
        )

    return await _send_python(
        client="rudder-sdk-python",
        version=RUDDER_VERSION,
        logger="rudderstack",
        make=make,
        calls=list(calls) if calls is not None else mixed_calls(user_id=user_id),
        timeout=timeout,
    )


async def _send_python(
    *,
    client: str,
    version: str,
    logger: str,
    make: Callable[[OnError], Any],
    calls: list[Call],
    timeout: float,
) -> SendReport:
    def run() -> SendReport:
        errors: list[ClientError] = []
        lock = threading.Lock()

        def on_error(exc: Exception, batch: list[JSON]) -> None:
            status = getattr(exc, "status", None)
            error = ClientError(
                kind=type(exc).__name__,
                detail=str(exc),
                status=status if isinstance(status, int) else None,
                message_ids=tuple(str(m.get("messageId")) for m in batch),
            )
            with lock:
                errors.append(error)

        capture = _LogCapture()
        logging.getLogger(logger).addHandler(capture)
        instance = make(on_error)
        try:
            for call in calls:
                queued, _ = getattr(instance, call.type.value)(**call.python_kwargs())
                if not queued:  # the client's queue (10,000 calls) is full: dropped
                    on_error(Exception("queue full"), [{"messageId": call.message_id}])
            # flush() is queue.join(): it returns once the consumer thread has uploaded
            # or given up on (on_error) every queued call, retries included.
            instance.flush()
        finally:
            instance.join()
            logging.getLogger(logger).removeHandler(capture)
        with lock:
            return SendReport(
                client=client,
                version=version,
                message_ids=tuple(c.message_id for c in calls),
                errors=tuple(errors),
                statuses=tuple(e.status for e in errors if e.status is not None),
                logged=tuple(capture.lines),
            )

    return await _in_daemon_thread(run, name=client, timeout=timeout)


def _settle(future: asyncio.Future[T], outcome: T | BaseException) -> None:
    if future.done():  # cancelled by the timeout
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


async def _in_daemon_thread(fn: Callable[[], T], *, name: str, timeout: float) -> T:
    """Like `asyncio.to_thread`, but in a daemon thread: a client still retrying when
    `timeout` runs out (rudder can keep `flush()` blocked for ~17 min) must not hold up
    the interpreter's exit, which joins `to_thread`'s executor threads."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        try:
            outcome: T | BaseException = fn()
        except BaseException as exc:
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_settle, done, outcome)

    threading.Thread(target=target, name=f"send-{name}", daemon=True).start()
    try:
        return await asyncio.wait_for(done, timeout)
    except TimeoutError:
        raise ClientTimeout(f"{name} had not flushed after {timeout} s") from None


async def send_analytics_node(
    base_url: str,
    write_key: str,
    *,
    user_id: str,
    calls: Sequence[Call] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> SendReport:
    """Like `send_segment_python`, with `@segment/analytics-node` in `node send.mjs`, then
    `closeAndFlush()`. Needs node >= 20; runs `npm ci` in tests/clients/node if needed."""
    await ensure_node_modules()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the analytics-node client needs it")
    chosen = list(calls) if calls is not None else mixed_calls(user_id=user_id)
    request = {
        "host": base_url,
        "writeKey": write_key,
        "flushInterval": int(FLUSH_INTERVAL_S * 1000),
        # Shorter than ours, so the client gives up (and says so) before we kill it.
        "closeTimeoutMs": int(timeout * 750),
        "calls": [c.segment_fields() for c in chosen],
    }
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SEND_SCRIPT),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(request).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ClientTimeout(f"analytics-node had not exited after {timeout} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"send.mjs exited {proc.returncode}:\n{err.decode(errors='replace')}")
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return _node_report(lines, [c.message_id for c in chosen])


def _node_report(lines: list[JSON], message_ids: list[str]) -> SendReport:
    errors = [
        ClientError(
            kind=str(line["code"]),
            detail=str(line["reason"]),
            status=_node_status(str(line["reason"])),
            message_ids=(str(line["messageId"]),) if line.get("messageId") else (),
        )
        for line in lines
        if line["kind"] == "error"
    ]
    return SendReport(
        client="@segment/analytics-node",
        version=next((str(line["version"]) for line in lines if line["kind"] == "version"), "?"),
        message_ids=tuple(message_ids),
        errors=tuple(errors),
        statuses=tuple(int(line["status"]) for line in lines if line["kind"] == "http_response"),
        attempts=sum(1 for line in lines if line["kind"] == "http_request"),
    )


def _node_status(reason: str) -> int | None:
    """analytics-node words HTTP failures as `[status] statusText`."""
    match = re.match(r"\[(\d{3})\]", reason)
    return int(match.group(1)) if match else None


async def ensure_node_modules() -> None:
    """`npm ci` in tests/clients/node unless @segment/analytics-node is installed there."""
    if (NODE_DIR / "node_modules" / "@segment" / "analytics-node" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the analytics-node client needs node and npm")
    proc = await asyncio.create_subprocess_exec(
        npm,
        "ci",
        "--no-audit",
        "--no-fund",
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    if proc.returncode != 0:
        raise RuntimeError(f"npm ci failed in {NODE_DIR}:\n{out.decode(errors='replace')}")
