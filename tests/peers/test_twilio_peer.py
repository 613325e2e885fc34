"""The Twilio peer driven with plain httpx; its callbacks and inbound webhooks are checked by a
bare aiohttp receiver on the test's own loop, which verifies X-Twilio-Signature itself."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx
import pytest
from aiohttp import web

from tests.peers.twilio import (
    Failure,
    Outcome,
    SubmitRate,
    TwilioPeer,
    new_sid,
    num_segments,
    submit_rate,
    twilio_signature,
    wait_until,
)

TO, FROM = "+14155550100", "+15005550006"
SID = re.compile(r"SM[0-9a-f]{32}")


@dataclass
class Seen:
    """One form POST the sink received; `url` is the sink's own idea of the URL it serves."""

    url: str
    params: dict[str, str]
    signature: str

    def verified_with(self, auth_token: str) -> bool:
        return twilio_signature(auth_token, self.url, self.params) == self.signature


class Sink:
    """A bare HTTP receiver on the caller's loop: records form POSTs, answers `answer`."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.answer = 200
        self.base = ""
        self._runner: web.AppRunner | None = None

    def url(self, path_qs: str) -> str:
        return self.base + path_qs

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait(self, count: int) -> list[Seen]:
        await wait_until(lambda: len(self.seen) >= count, within=10, what="sink posts")
        return list(self.seen)

    async def _receive(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        signature = request.headers.get("X-Twilio-Signature", "")
        self.seen.append(Seen(self.url(request.path_qs), params, signature))
        return web.Response(status=self.answer, text="<Response/>", content_type="text/xml")


@pytest.fixture
async def peer() -> AsyncIterator[TwilioPeer]:
    async with TwilioPeer() as p:
        yield p


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        yield c


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    await s.start()
    yield s
    await s.stop()


async def send(client: httpx.AsyncClient, peer: TwilioPeer, **params: str) -> httpx.Response:
    data = {"To": TO, "From": FROM, "Body": "Hi from Nudge"} | params
    return await client.post(peer.messages_url, auth=peer.basic_auth, data=data)


def test_signature_matches_twilios_reference_vector() -> None:
    # The example from Twilio's webhook-security docs and twilio-python's own tests.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("ł" * 70, 1),  # not GSM-7: UCS-2
        ("ł" * 71, 2),
        ("😀" * 35, 1),  # two UTF-16 units each
        ("😀" * 36, 2),
    ],
)
def test_num_segments(body: str, segments: int) -> None:
    assert num_segments(body) == segments


async def test_auth_failures_and_api_keys(peer: TwilioPeer, client: httpx.AsyncClient) -> None:
    data = {"To": TO, "From": FROM, "Body": "x"}
    missing = await client.post(peer.messages_url, data=data)
    wrong = await client.post(peer.messages_url, data=data, auth=(peer.account_sid, "nope"))
    for resp in (missing, wrong):
        assert resp.status_code == 401
        assert resp.json() == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    other = peer.messages_url.replace(peer.account_sid, new_sid("AC"))
    elsewhere = await client.post(other, data=data, auth=peer.basic_auth)
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (404, 20404)
    [(key_sid, key_secret)] = peer.api_keys.items()
    by_key = await client.post(peer.messages_url, data=data, auth=(key_sid, key_secret))
    assert by_key.status_code == 201
    [sub] = peer.submits
    assert sub.auth_user == key_sid
    assert [r.status for r in peer.requests] == [401, 401, 404, 201]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"To": ""}, 21604),
        ({"From": ""}, 21603),
        ({"Body": ""}, 21602),
        ({"Body": "x" * 1601}, 21617),
        ({"To": "415-555-0100"}, 21211),
        ({"To": "+15005550001"}, 21211),  # Twilio's magic "invalid" number
        ({"To": "+15005550004"}, 21610),  # magic "unsubscribed" (texted STOP)
        ({"StatusCallback": "not a url"}, 21609),
    ],
)
async def test_invalid_requests(
    peer: TwilioPeer, client: httpx.AsyncClient, params: dict[str, str], code: int
) -> None:
    resp = await send(client, peer, **params)
    assert resp.status_code == 400
    body = resp.json()
    assert (body["code"], body["status"]) == (code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(body["message"], str) and body["message"]
    assert peer.submits == []
    assert peer.requests[0].error_code == code


async def test_created_message_resource(peer: TwilioPeer, client: httpx.AsyncClient) -> None:
    waiter = asyncio.ensure_future(peer.wait_for_messages(1))
    resp = await send(client, peer, Body="a" * 161)
    assert resp.status_code == 201
    msg = resp.json()
    [sub] = await waiter
    assert SID.fullmatch(msg["sid"]) and msg["sid"] == sub.sid
    assert (msg["status"], msg["to"], msg["from"], msg["body"]) == ("queued", TO, FROM, "a" * 161)
    assert (msg["num_segments"], msg["num_media"], msg["direction"]) == ("2", "0", "outbound-api")
    assert (msg["account_sid"], msg["error_code"], msg["api_version"]) == (
        peer.account_sid,
        None,
        "2010-04-01",
    )
    assert msg["uri"] == f"/2010-04-01/Accounts/{peer.account_sid}/Messages/{sub.sid}.json"
    assert parsedate_to_datetime(msg["date_created"]).utcoffset() is not None
    fetched = await client.get(peer.base_url + msg["uri"], auth=peer.basic_auth)
    assert (fetched.status_code, fetched.json()["sid"]) == (200, sub.sid)

    service = new_sid("MG")
    resp = await send(client, peer, From="", MessagingServiceSid=service)
    assert resp.status_code == 201
    assert (resp.json()["status"], resp.json()["from"]) == ("accepted", None)
    assert resp.json()["messaging_service_sid"] == service


async def test_status_callbacks_are_signed_and_ordered(
    peer: TwilioPeer, client: httpx.AsyncClient, sink: Sink
) -> None:
    callback = sink.url("/twilio/status?tenant=t1")
    ok = (await send(client, peer, StatusCallback=callback)).json()["sid"]
    lost = (await send(client, peer, To="+14155550001", StatusCallback=callback)).json()["sid"]
    seen = await sink.wait(4)
    for post in seen:
        assert post.verified_with(peer.auth_token), post
        assert not post.verified_with("another-token")
        assert post.params["AccountSid"] == peer.account_sid
        assert post.params["SmsSid"] == post.params["MessageSid"]
        assert post.params["SmsStatus"] == post.params["MessageStatus"]
        assert post.url == callback
    tampered = Seen(seen[0].url, seen[0].params | {"MessageStatus": "read"}, seen[0].signature)
    assert not tampered.verified_with(peer.auth_token)

    def story(sid: str) -> list[tuple[str, str | None]]:
        mine = [p.params for p in seen if p.params["MessageSid"] == sid]
        return [(p["MessageStatus"], p.get("ErrorCode")) for p in mine]

    assert story(ok) == [("sent", None), ("delivered", None)]
    assert story(lost) == [("sent", None), ("undelivered", "30003")]
    await peer.wait_for_callbacks(4)
    assert all(c.status == 200 for c in peer.callbacks)
    fetched = await client.get(f"{peer.messages_url[:-5]}/{lost}.json", auth=peer.basic_auth)
    assert (fetched.json()["status"], fetched.json()["error_code"]) == ("undelivered", 30003)


async def test_routes_and_default_outcome(
    peer: TwilioPeer, client: httpx.AsyncClient, sink: Sink
) -> None:
    peer.route(Outcome(("failed",), error_code=30001, delay=0.2), prefix="+44")
    peer.default_outcome = Outcome(("sent",))
    callback = sink.url("/s")
    await send(client, peer, To="+447700900123", StatusCallback=callback)
    await send(client, peer, StatusCallback=callback)
    seen = await sink.wait(2)
    assert sorted((p.params["To"], p.params["MessageStatus"]) for p in seen) == [
        ("+14155550100", "sent"),
        ("+447700900123", "failed"),
    ]
    uk = next(c for c in await peer.wait_for_callbacks(2) if c.params["To"].startswith("+44"))
    assert uk.params["ErrorCode"] == "30001"
    assert uk.at - peer.submits[0].at >= 0.2  # a lower bound only: the delay was kept


async def test_inbound_message_is_signed(peer: TwilioPeer, sink: Sink) -> None:
    status = await peer.send_inbound(sink.url("/twilio/mo"), "+14155550123", FROM, "STOP")
    assert status == 200
    [post] = await sink.wait(1)
    assert post.verified_with(peer.auth_token)
    p = post.params
    assert (p["From"], p["To"], p["Body"], p["AccountSid"]) == (
        "+14155550123",
        FROM,
        "STOP",
        peer.account_sid,
    )
    assert (p["NumMedia"], p["NumSegments"], p["SmsStatus"]) == ("0", "1", "received")
    assert SID.fullmatch(p["MessageSid"]) and p["SmsMessageSid"] == p["MessageSid"]
    sink.answer = 403
    assert await peer.send_inbound(sink.url("/twilio/mo"), "+1", FROM, "hi") == 403


async def test_inbound_to_nobody_raises(peer: TwilioPeer, sink: Sink) -> None:
    url = sink.url("/mo")
    await sink.stop()
    with pytest.raises(ConnectionError):
        await peer.send_inbound(url, "+14155550123", FROM, "hi")


async def test_throttle(peer: TwilioPeer, client: httpx.AsyncClient) -> None:
    peer.failure, peer.retry_after = Failure.THROTTLE, 3
    resp = await send(client, peer)
    assert (resp.status_code, resp.json()["code"], resp.json()["status"]) == (429, 20429, 429)
    assert resp.headers["Retry-After"] == "3"
    assert peer.submits == []
    peer.failure = None
    assert (await send(client, peer)).status_code == 201


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [(Failure.ERROR_500, 500, 20500), (Failure.ERROR_503, 503, 20503)],
)
async def test_server_errors(
    peer: TwilioPeer, client: httpx.AsyncClient, failure: Failure, status: int, code: int
) -> None:
    peer.failure = failure
    resp = await send(client, peer)
    assert (resp.status_code, resp.json()["code"]) == (status, code)
    assert peer.submits == []


async def test_fail_every(peer: TwilioPeer, client: httpx.AsyncClient) -> None:
    peer.fail_every = 3
    statuses = [(await send(client, peer)).status_code for _ in range(6)]
    assert statuses == [201, 201, 500, 201, 201, 500]
    assert len(peer.submits) == 4


async def test_hang_never_answers(peer: TwilioPeer, client: httpx.AsyncClient) -> None:
    peer.failure = Failure.HANG
    with pytest.raises(httpx.TimeoutException):
        await client.post(
            peer.messages_url,
            auth=peer.basic_auth,
            data={"To": TO, "From": FROM, "Body": "x"},
            timeout=httpx.Timeout(10, read=0.3),
        )
    assert peer.submits == []


async def test_hang_after_accept_is_the_lost_201(
    peer: TwilioPeer, client: httpx.AsyncClient, sink: Sink
) -> None:
    peer.failure = Failure.HANG_AFTER_ACCEPT
    pending = asyncio.ensure_future(send(client, peer, StatusCallback=sink.url("/s")))
    [sub] = await peer.wait_for_messages(1)
    seen = await sink.wait(2)  # the message went out ...
    assert [p.params["MessageStatus"] for p in seen] == ["sent", "delivered"]
    assert seen[0].params["MessageSid"] == sub.sid
    assert not pending.done()  # ... while its sender still has no answer
    assert peer.requests[0].status is None
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending


async def test_down_refuses_and_up_listens_on_the_same_port(
    peer: TwilioPeer, client: httpx.AsyncClient
) -> None:
    assert (await send(client, peer)).status_code == 201  # leaves a kept-alive connection
    port = peer.port
    await peer.down()
    assert peer.is_down
    with pytest.raises(httpx.TransportError):
        await send(client, peer)
    async with httpx.AsyncClient(trust_env=False) as fresh:
        with pytest.raises(httpx.ConnectError):
            await send(fresh, peer)
    await peer.up()
    assert (peer.port, peer.is_down) == (port, False)
    assert (await send(client, peer)).status_code == 201


def test_submit_rate_over_sliding_windows() -> None:
    paced = [i * 0.05 for i in range(40)]  # 20 per second for 2 s
    rate = submit_rate(paced)
    assert (rate.count, rate.max_per_second) == (40, 20)
    assert rate.mean_per_second == pytest.approx(20.0)
    straddling = [10.0] * 10 + [10.999] * 10  # two bursts inside one 1-second window
    assert submit_rate(straddling).max_per_second == 20
    apart = [10.0] * 10 + [11.0] * 10  # the window is half-open: [t, t + 1)
    assert submit_rate(apart).max_per_second == 10
    assert submit_rate([]) == SubmitRate(count=0, max_per_second=0, mean_per_second=0.0)
    assert submit_rate([5.0]) == SubmitRate(count=1, max_per_second=1, mean_per_second=0.0)
    assert submit_rate([5.0, 5.0]).mean_per_second == float("inf")


async def test_rate_counts_accepted_submits(peer: TwilioPeer, client: httpx.AsyncClient) -> None:
    start = time.monotonic()
    for to in (TO, TO, "bad", TO, TO):
        await send(client, peer, To=to)
    assert peer.rate().count == 4  # the 400 is not a submit
    assert peer.rate(since=start).count == 4
    assert peer.rate(since=time.monotonic()).count == 0
    assert 1 <= peer.rate().max_per_second <= 4
    assert all(start <= s.at <= time.monotonic() for s in peer.submits)


async def test_wait_for_messages_times_out(peer: TwilioPeer) -> None:
    with pytest.raises(TimeoutError, match="messages"):
        await peer.wait_for_messages(1, within=0.05)
