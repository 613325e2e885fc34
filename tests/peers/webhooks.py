"""A Standard Webhooks receiver for tests (aiohttp, plain http on 127.0.0.1).

Every POST (any path) is checked as https://www.standardwebhooks.com says: headers
`webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature`, a space-separated
list of `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}." + body)>`, where key is the
base64-decoded part of a `whsec_...` secret; any one matching v1 entry will do, other
versions are skipped. A request is rejected (recorded in `rejections`) with
  401  a header missing, a timestamp that is not an integer, a timestamp more than
       `tolerance` (300 s) from now either way, no matching signature
  400  a correctly signed body that is not JSON (Nudge always sends JSON).
A verified request is recorded in `deliveries` (id, timestamp, JSON body, headers) and
answered 200, or `fail_with` while that is set (for the next `fail_times` requests, or all),
after `slow` seconds. `down()` / `up()` stop and resume listening on the same port.

The verifier is our own (`verify()`), not the `standardwebhooks` package: standardwebhooks
1.1.0 (PyPI) signs the spec's test vector as `sign()` does, but it reads only the wall clock
with a fixed 5-minute tolerance, lets a malformed signature entry escape as ValueError, and
decodes the body as text; a receiver that records why it rejected wants none of that.

Use:  async with WebhookReceiver() as hooks:
          sender_posts_to(hooks.url, secret=hooks.secret)
          await hooks.wait_for_ids(["msg_1"])
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web

from tests.peers._base import ThreadedPeer

T = TypeVar("T")
TOLERANCE = 300.0  # seconds a timestamp may be off, either way (the spec's 5 minutes)


def new_secret() -> str:
    """A fresh `whsec_` secret: 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: base64-decoded (padding optional), after an optional
    `whsec_` prefix."""
    text = secret.removeprefix("whsec_")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _mac(secret: str, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(secret_key(secret), signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of `body` sent as message `msg_id` at unix `timestamp`."""
    return "v1," + base64.b64encode(_mac(secret, msg_id, timestamp, body)).decode()


def signed_headers(
    secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` (timestamp: now, unless given)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


class Rejection(StrEnum):
    """Why the receiver refused a request."""

    MISSING_HEADERS = "missing_headers"
    BAD_TIMESTAMP = "bad_timestamp"  # not an integer
    STALE_TIMESTAMP = "stale_timestamp"  # more than the tolerance from now, either way
    BAD_SIGNATURE = "bad_signature"  # no v1 entry matches any accepted secret
    NOT_JSON = "not_json"  # signed correctly, but the body is not JSON


def verify(
    valid_secrets: Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> Rejection | None:
    """Check a request against Standard Webhooks: None if it is genuine, else why not.
    `headers` are matched case-insensitively; `now` is unix seconds; any of `valid_secrets` may
    have signed it; the body is not parsed."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = (lower.get(f"webhook-{h}") for h in ("id", "timestamp", "signature"))
    if not (msg_id and ts and sigs):
        return Rejection.MISSING_HEADERS
    if not ts.isascii() or not ts.isdigit():
        return Rejection.BAD_TIMESTAMP
    if abs(now - int(ts)) > tolerance:
        return Rejection.STALE_TIMESTAMP
    expected = [_mac(s, msg_id, int(ts), body) for s in valid_secrets]
    for entry in sigs.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if any(hmac.compare_digest(given, e) for e in expected):
            return None
    return Rejection.BAD_SIGNATURE


@dataclass
class WebhookDelivery:
    """One verified request: `at` is `time.monotonic()` on arrival, `status` what it was
    answered (200, or `fail_with`); `headers` are lower-cased."""

    msg_id: str
    timestamp: int
    body: Any
    headers: dict[str, str]
    path: str
    at: float
    status: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class WebhookRejection:
    """One refused request and why."""

    reason: Rejection
    status: int
    headers: dict[str, str]
    raw: bytes
    path: str
    at: float


async def wait_until(check: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll `check` (every 5 ms) until it holds; TimeoutError naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not seen within {within} s")
        await asyncio.sleep(0.005)


class WebhookReceiver(ThreadedPeer):
    """Local webhook endpoint. After start: `url`, `port`; always: `secrets` (the first is
    `secret`; append one to accept a rotated key too), `deliveries`, `rejections`, and the
    switches `fail_with`, `fail_times`, `slow`. `port` pins the port (0: a free one, kept
    across `down()` / `up()`)."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        tolerance: float = TOLERANCE,
        path: str = "/webhooks",
        port: int = 0,
    ) -> None:
        super().__init__()
        self.port = port
        self.secrets = [secret or new_secret()]
        self.tolerance = tolerance
        self.path = path
        self.fail_with: int | None = None  # an HTTP status to answer verified requests with
        self.fail_times: int | None = None  # how many more to fail (None: all while set)
        self.slow = 0.0  # seconds to wait before answering (the delivery is recorded first)
        self.deliveries: list[WebhookDelivery] = []
        self.rejections: list[WebhookRejection] = []
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def secret(self) -> str:
        return self.secrets[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def is_down(self) -> bool:
        return self._site is None

    def accepted(self) -> list[WebhookDelivery]:
        """Deliveries answered 2xx, in arrival order."""
        return [d for d in self.deliveries if d.ok]

    def arrivals(self) -> Counter[str]:
        """How many times each id arrived verified, whatever it was answered."""
        return Counter(d.msg_id for d in self.deliveries)

    def unique_ids(self) -> list[str]:
        """Ids answered 2xx at least once, in order of their first 2xx."""
        return list(dict.fromkeys(d.msg_id for d in self.accepted()))

    def duplicates(self) -> dict[str, int]:
        """Ids answered 2xx more than once, with how many times (retries after a failure
        answer are not duplicates; a retry after a slow 200 is)."""
        counts = Counter(d.msg_id for d in self.accepted())
        return {msg_id: n for msg_id, n in counts.items() if n > 1}

    async def wait_for_ids(
        self, ids: Collection[str] | int, *, within: float = 5.0
    ) -> list[WebhookDelivery]:
        """Wait until every id in `ids` (or `ids` distinct ids) was answered 2xx; returns the
        first 2xx delivery of each, in the order of `ids` (or of arrival)."""
        if isinstance(ids, int):
            count = ids
            await wait_until(
                lambda: len(self.unique_ids()) >= count, within=within, what=f"{count} ids"
            )
            wanted = self.unique_ids()[:count]
        else:
            wanted = list(ids)
            await wait_until(
                lambda: set(wanted) <= set(self.unique_ids()), within=within, what=str(wanted)
            )
        first: dict[str, WebhookDelivery] = {}
        for d in self.accepted():
            first.setdefault(d.msg_id, d)
        return [first[i] for i in wanted]

    async def wait_for_rejections(
        self, count: int, *, within: float = 5.0
    ) -> list[WebhookRejection]:
        """Wait until `count` requests were rejected in all; returns them all."""
        await wait_until(lambda: len(self.rejections) >= count, within=within, what="rejections")
        return list(self.rejections)

    async def down(self) -> None:
        """Stop listening and close every open connection (senders get connection errors)."""
        await self._in_loop(self._stop_listening())

    async def up(self) -> None:
        """Listen again on the same port."""
        await self._in_loop(self._listen())

    # -- server ----------------------------------------------------------------------------

    async def _in_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "start the receiver first"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        if self._site is not None or self._runner is None:
            return
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024)
        await site.start()
        self._site, self.port = site, self._runner.addresses[0][1]

    async def _stop_listening(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for conn in self._runner.server.connections:
                conn.force_close()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner, self._site = None, None

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        at = time.monotonic()
        headers = {k.lower(): v for k, v in request.headers.items()}
        reason = verify(self.secrets, headers, raw, now=time.time(), tolerance=self.tolerance)
        body: Any = None
        if reason is None:
            try:
                body = json.loads(raw)
            except ValueError:
                reason = Rejection.NOT_JSON
        if reason is not None:
            status = 400 if reason is Rejection.NOT_JSON else 401
            self.rejections.append(WebhookRejection(reason, status, headers, raw, request.path, at))
            return web.json_response({"error": reason.value}, status=status)
        status = self._answer()
        msg_id, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
        self.deliveries.append(WebhookDelivery(msg_id, ts, body, headers, request.path, at, status))
        if self.slow:
            await asyncio.sleep(self.slow)
        return web.Response(status=status)

    def _answer(self) -> int:
        """The status for the next verified request, counting down `fail_times`."""
        if self.fail_with is None:
            return 200
        status = self.fail_with
        if self.fail_times is not None:
            self.fail_times -= 1
            if self.fail_times <= 0:
                self.fail_with, self.fail_times = None, None
        return status
