"""A Twilio Programmable Messaging-shaped HTTP server for tests (aiohttp, http on 127.0.0.1).

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` takes a form body and HTTP Basic auth
(the AccountSid and auth token, or an API key SID and secret). It answers 201 with a message
resource (`status` "queued", or "accepted" with `from` null when only MessagingServiceSid is
given), or Twilio's error JSON `{"code", "message", "more_info", "status"}`:
  no or wrong credentials  401 20003        another account's URL        404 20404
  no To                    400 21604        no From nor MessagingServiceSid  400 21603
  no Body                  400 21602        Body over 1600 characters    400 21617
  To not E.164             400 21211        StatusCallback not a URL     400 21609
and, as Twilio's magic test numbers do, To +15005550001 21211, +15005550002 21612,
+15005550003 21408, +15005550004 21610 (unsubscribed: texted STOP), +15005550009 21614.
`GET .../Messages/{Sid}.json` returns the message as it stands now.

After the 201 each message plays its `Outcome`, chosen by To (`route()`; newest route first):
  *0001  sent, undelivered 30003     *0002  failed 30001     *0003  sent, undelivered 30007
  other  sent, delivered             (`default_outcome`)
and each status is POSTed to its StatusCallback, signed with X-Twilio-Signature (always the
auth token, as Twilio does, even for messages sent with an API key).

Runtime switches: `failure` (a `Failure`, for every submit), `fail_every` (every N-th
authenticated submit gets `fail_every_with`), `down()` / `up()` (stop and resume listening on
the same port; open connections are closed). `send_inbound()` plays an MO message.

Use:  async with TwilioPeer() as peer:
          httpx.post(peer.messages_url, auth=peer.basic_auth, data={"To": ..., ...})
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from bisect import bisect_left
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from tests.peers._base import ThreadedPeer

T = TypeVar("T")
API = "/2010-04-01"
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_MAGIC_TO = {  # Twilio's test-credential magic numbers: To -> (code, message)
    "+15005550001": (21211, "Invalid 'To' Phone Number: +15005550001"),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550003": (21408, "Permission to send an SMS has not been enabled for the region."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}
_CHALLENGE = (("WWW-Authenticate", 'Basic realm="Twilio API"'),)
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = frozenset("\f^{}\\[~]|€")  # each takes two septets (escape + char)


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: the two-letter prefix ("SM", "AC", "SK", "MG") and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature of a form POST: base64(HMAC-SHA1(auth_token, url + k1 + v1 + k2 +
    v2 ...)) with the keys sorted. `url` is the full URL requested, query string included."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def num_segments(body: str) -> int:
    """SMS segments for `body`: GSM-7 160 septets alone or 153 per part (extension characters
    count 2), else UCS-2 70 UTF-16 units alone or 67 per part. It does not move an escape or
    surrogate pair off a part boundary, so it can be one low for such bodies."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in body):
        units, single, part = sum(1 + (c in _GSM7_EXT) for c in body), 160, 153
    else:
        units, single, part = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // part)


@dataclass(frozen=True)
class TwilioError:
    """One REST error answer: HTTP status, Twilio error code and message."""

    status: int
    code: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> web.Response:
        """Twilio's error JSON, `more_info` pointing at the code's docs page."""
        info = f"https://www.twilio.com/docs/errors/{self.code}"
        body = dict(code=self.code, message=self.message, more_info=info, status=self.status)
        return web.json_response(body, status=self.status, headers=dict(self.headers))


class Failure(StrEnum):
    """How the Messages endpoint misbehaves while switched on (checked after auth)."""

    THROTTLE = "throttle"  # 429, code 20429, Retry-After: `retry_after` seconds
    ERROR_500 = "error_500"  # 500, code 20500
    ERROR_503 = "error_503"  # 503, code 20503
    HANG = "hang"  # reads the request, never answers, records no message
    HANG_AFTER_ACCEPT = "hang_after_accept"  # records and plays the message, never answers


@dataclass(frozen=True)
class Outcome:
    """What an accepted message does after its 201: each of `statuses` is reported to its
    StatusCallback in order, each `delay` seconds after the one before (the first after the
    201); `error_code` goes with "undelivered" and "failed" as ErrorCode."""

    statuses: tuple[str, ...] = ("sent", "delivered")
    error_code: int | None = None
    delay: float = 0.0


DELIVERED = Outcome()
UNDELIVERED = Outcome(("sent", "undelivered"), error_code=30003)  # unreachable handset
FAILED = Outcome(("failed",), error_code=30001)  # queue overflow: never left Twilio
FILTERED = Outcome(("sent", "undelivered"), error_code=30007)  # carrier filtering
DEFAULT_ROUTES = (("", "0001", UNDELIVERED), ("", "0002", FAILED), ("", "0003", FILTERED))


@dataclass
class TwilioSubmit:
    """One message the peer accepted; `at` is `time.monotonic()` on arrival, `status` and
    `error_code` move as its outcome plays."""

    sid: str
    at: float
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None
    status_callback: str | None
    auth_user: str  # the AccountSid or API key SID that authenticated
    created: datetime
    status: str = "queued"
    error_code: int | None = None

    @property
    def num_segments(self) -> int:
        return num_segments(self.body)


@dataclass
class TwilioRequest:
    """One request to the Messages endpoint and its answer (`status` None: never answered)."""

    at: float
    account_sid: str
    auth_user: str | None
    params: dict[str, str]
    status: int | None = None
    error_code: int | None = None


@dataclass
class SignedPost:
    """One status callback or inbound webhook the peer POSTed, and what the receiver said
    (`status` None: no answer, see `error`); `at` is `time.monotonic()` when sent."""

    url: str
    params: dict[str, str]
    signature: str
    at: float = field(default_factory=time.monotonic)
    status: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class SubmitRate:
    """Submit rate: `max_per_second` is the most submits in any 1-second window [t, t+1);
    `mean_per_second` is (count - 1) / (last - first): 0 for one submit, inf for a burst
    of two or more at one instant."""

    count: int
    max_per_second: int
    mean_per_second: float


def submit_rate(times: Sequence[float]) -> SubmitRate:
    """The `SubmitRate` of submits at monotonic `times` (seconds, any order)."""
    ts = sorted(times)
    peak = max((bisect_left(ts, t + 1.0) - i for i, t in enumerate(ts)), default=0)
    span = ts[-1] - ts[0] if len(ts) > 1 else 0.0
    mean = (len(ts) - 1) / span if span > 0 else (float("inf") if len(ts) > 1 else 0.0)
    return SubmitRate(count=len(ts), max_per_second=peak, mean_per_second=mean)


async def wait_until(check: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll `check` (every 5 ms) until it holds; TimeoutError naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not seen within {within} s")
        await asyncio.sleep(0.005)


class TwilioPeer(ThreadedPeer):
    """Local Twilio Messaging. After start: `messages_url`, `port`; always: `account_sid`,
    `auth_token`, `api_keys`, and what it saw: `requests`, `submits`, `callbacks`, `inbound`.
    `port` pins the port (0: a free one, kept across `down()` / `up()`)."""

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        api_keys: Mapping[str, str] | None = None,
        retry_after: int = 1,
        service_number: str = "+15005550006",
        port: int = 0,
    ) -> None:
        super().__init__()
        self.port = port
        self.account_sid = account_sid or new_sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        keys = api_keys if api_keys is not None else {new_sid("SK"): secrets.token_urlsafe(24)}
        self.api_keys = dict(keys)
        self.retry_after = retry_after  # seconds, sent as Retry-After with every 429
        self.service_number = service_number  # the From a Messaging Service picks
        self.failure: Failure | None = None
        self.fail_every = 0  # 0: never
        self.fail_every_with = Failure.ERROR_500
        self.default_outcome = DELIVERED
        self.requests: list[TwilioRequest] = []
        self.submits: list[TwilioSubmit] = []
        self.callbacks: list[SignedPost] = []
        self.inbound: list[SignedPost] = []
        self._routes: tuple[tuple[str, str, Outcome], ...] = DEFAULT_ROUTES
        self._seen = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._client: aiohttp.ClientSession | None = None

    # -- what tests use --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}{API}/Accounts/{self.account_sid}/Messages.json"

    @property
    def basic_auth(self) -> tuple[str, str]:
        """(AccountSid, auth token), for `httpx`'s `auth=`."""
        return self.account_sid, self.auth_token

    @property
    def is_down(self) -> bool:
        return self._site is None

    def route(self, outcome: Outcome, *, prefix: str = "", suffix: str = "") -> None:
        """Messages whose To starts with `prefix` and ends with `suffix` play `outcome`; this
        route wins over older ones and the built-in ones."""
        self._routes = ((prefix, suffix, outcome), *self._routes)

    def outcome_for(self, to: str) -> Outcome:
        for prefix, suffix, outcome in self._routes:
            if to.startswith(prefix) and to.endswith(suffix):
                return outcome
        return self.default_outcome

    def rate(self, *, since: float | None = None) -> SubmitRate:
        """`submit_rate` of the accepted submits, those at or after monotonic `since` only."""
        return submit_rate([s.at for s in self.submits if since is None or s.at >= since])

    async def down(self) -> None:
        """Stop listening and close every open connection (clients get connection errors)."""
        await self._in_loop(self._stop_listening())

    async def up(self) -> None:
        """Listen again on the same port."""
        await self._in_loop(self._listen())

    async def wait_for_messages(self, count: int, *, within: float = 5.0) -> list[TwilioSubmit]:
        """Wait until `count` messages were accepted in all; returns them all."""
        await wait_until(lambda: len(self.submits) >= count, within=within, what="messages")
        return list(self.submits)

    async def wait_for_requests(self, count: int, *, within: float = 5.0) -> list[TwilioRequest]:
        """Wait until `count` requests reached the Messages endpoint (answered or not)."""
        await wait_until(lambda: len(self.requests) >= count, within=within, what="requests")
        return list(self.requests)

    async def wait_for_callbacks(self, count: int, *, within: float = 5.0) -> list[SignedPost]:
        """Wait until `count` status callbacks were answered (or failed); returns them all."""

        def answered() -> bool:
            return sum(c.status is not None or c.error is not None for c in self.callbacks) >= count

        await wait_until(answered, within=within, what="status callbacks")
        return list(self.callbacks)

    async def send_inbound(
        self, to_url: str, from_: str, to: str, body: str, *, num_segments: int = 1
    ) -> int:
        """POST a signed Twilio inbound-SMS webhook to `to_url`; returns the HTTP status it
        answered (raises ConnectionError if it did not answer)."""
        sid = new_sid("SM")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API.strip("/"),
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": str(num_segments),
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
        }
        post = self._signed(to_url, params)
        self.inbound.append(post)
        await self._in_loop(self._deliver(post))
        if post.status is None:
            raise ConnectionError(f"{to_url} did not answer: {post.error}")
        return post.status

    # -- server ----------------------------------------------------------------------------

    async def _in_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "start the peer first"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _serve(self) -> None:
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        app = web.Application()
        app.router.add_post(API + "/Accounts/{account}/Messages.json", self._create)
        app.router.add_get(API + "/Accounts/{account}/Messages/{sid}.json", self._fetch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        if self._site is not None or self._runner is None:
            return
        # A deep backlog: bursts of concurrent sends must not be dropped (see fcm.py).
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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner, self._site = None, None
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _user(self, header: str | None) -> str | None:
        """The SID that `header` (HTTP Basic) authenticates, or None."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = self.auth_token if user == self.account_sid else self.api_keys.get(user)
        ok = expected is not None and hmac.compare_digest(password.encode(), expected.encode())
        return user if ok else None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        params = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        user = self._user(request.headers.get("Authorization"))
        rec = TwilioRequest(time.monotonic(), request.match_info["account"], user, params)
        self.requests.append(rec)
        error, failure = self._check(rec, request.path)
        sub = None
        if error is None and failure in (None, Failure.HANG_AFTER_ACCEPT):
            error = self._validate(params)
            sub = self._accept(rec, user or "") if error is None else None
        if failure in (Failure.HANG, Failure.HANG_AFTER_ACCEPT):
            await asyncio.get_running_loop().create_future()  # until the peer stops
        if error is not None:
            rec.status, rec.error_code = error.status, error.code
            return error.response()
        assert sub is not None
        rec.status = 201
        return web.json_response(self._resource(sub), status=201)

    def _check(self, rec: TwilioRequest, path: str) -> tuple[TwilioError | None, Failure | None]:
        """Auth, account and switched-on failures: an error, or a hang still to play."""
        if rec.auth_user is None:
            return TwilioError(401, 20003, "Authenticate", _CHALLENGE), None
        if rec.account_sid != self.account_sid:
            return TwilioError(404, 20404, f"The requested resource {path} was not found"), None
        self._seen += 1
        failure = self.failure
        if self.fail_every and self._seen % self.fail_every == 0:
            failure = self.fail_every_with
        if failure is Failure.THROTTLE:
            retry = (("Retry-After", str(self.retry_after)),)
            return TwilioError(429, 20429, "Too Many Requests", retry), None
        if failure is Failure.ERROR_500:
            return TwilioError(500, 20500, "An internal server error has occurred"), None
        if failure is Failure.ERROR_503:
            return TwilioError(503, 20503, "Service is unavailable. Please try again"), None
        return None, failure

    def _validate(self, params: Mapping[str, str]) -> TwilioError | None:
        to, body, callback = params.get("To", ""), params.get("Body"), params.get("StatusCallback")
        if not to:
            return TwilioError(400, 21604, "A 'To' phone number is required.")
        if not params.get("From") and not params.get("MessagingServiceSid"):
            return TwilioError(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
        if not body:
            return TwilioError(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return TwilioError(400, 21617, "The message body exceeds the 1600 character limit.")
        if not _E164.fullmatch(to):
            return TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if to in _MAGIC_TO:
            return TwilioError(400, *_MAGIC_TO[to])
        if callback is not None:
            parts = urlsplit(callback)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return TwilioError(400, 21609, f"The StatusCallback URL {callback} is not valid.")
        return None

    def _accept(self, rec: TwilioRequest, user: str) -> TwilioSubmit:
        p = rec.params
        service = p.get("MessagingServiceSid") or None
        sub = TwilioSubmit(
            sid=new_sid("SM"),
            at=rec.at,
            to=p["To"],
            from_=p.get("From") or None,
            body=p["Body"],
            messaging_service_sid=service,
            status_callback=p.get("StatusCallback"),
            auth_user=user,
            created=datetime.now(UTC),
            status="accepted" if service and not p.get("From") else "queued",
        )
        self.submits.append(sub)
        task = asyncio.ensure_future(self._play(sub, self.outcome_for(sub.to)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return sub

    async def _play(self, sub: TwilioSubmit, outcome: Outcome) -> None:
        for status in outcome.statuses:
            await asyncio.sleep(outcome.delay)
            sub.status = status
            failed = status in ("undelivered", "failed")
            sub.error_code = outcome.error_code if failed else None
            if sub.status_callback is None:
                continue
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API.strip("/"),
                "From": sub.from_ or self.service_number,
                "MessageSid": sub.sid,
                "MessageStatus": status,
                "SmsSid": sub.sid,
                "SmsStatus": status,
                "To": sub.to,
            }
            if sub.messaging_service_sid:
                params["MessagingServiceSid"] = sub.messaging_service_sid
            if sub.error_code is not None:
                params["ErrorCode"] = str(sub.error_code)
            post = self._signed(sub.status_callback, params)
            self.callbacks.append(post)
            await self._deliver(post)  # one at a time: "delivered" never overtakes "sent"

    def _signed(self, url: str, params: dict[str, str]) -> SignedPost:
        return SignedPost(url, params, twilio_signature(self.auth_token, url, params))

    async def _deliver(self, post: SignedPost) -> None:
        """POST `post` (form-encoded, signed) and note the answer on it; never raises."""
        headers = {"X-Twilio-Signature": post.signature, "User-Agent": "TwilioProxy/1.1"}
        assert self._client is not None
        try:
            async with self._client.post(post.url, data=post.params, headers=headers) as resp:
                await resp.read()
                post.status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            post.error = repr(exc)

    async def _fetch(self, request: web.Request) -> web.Response:
        if self._user(request.headers.get("Authorization")) is None:
            return TwilioError(401, 20003, "Authenticate", _CHALLENGE).response()
        for sub in self.submits:
            if sub.sid == request.match_info["sid"]:
                return web.json_response(self._resource(sub))
        missing = f"The requested resource {request.path} was not found"
        return TwilioError(404, 20404, missing).response()

    def _resource(self, sub: TwilioSubmit) -> dict[str, Any]:
        uri = f"{API}/Accounts/{self.account_sid}/Messages/{sub.sid}"
        created = format_datetime(sub.created)
        return {
            "account_sid": self.account_sid,
            "api_version": API.strip("/"),
            "body": sub.body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": sub.error_code,
            "error_message": None,
            "from": sub.from_,
            "messaging_service_sid": sub.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(sub.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": sub.sid,
            "status": sub.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": sub.to,
            "uri": f"{uri}.json",
        }
