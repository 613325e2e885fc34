"""SmppBridge + SmppProvider against the in-process smpp34 SMSC (real sockets, real PDUs).

Where a test needs the SMSC or a callback to be slow, the test holds it (an event it sets)
instead of relying on a delay being long enough."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from engine.channels.base import (
    InvalidRequestError,
    PermanentAddressError,
    RetryableError,
    ThrottledError,
)
from engine.channels.sms.encoding import ESC
from engine.channels.sms.keywords import classify
from engine.channels.sms.provider import SmppProvider
from tests.kit import eventually
from tests.kit.sms import PHONE, Recorder, make_provider, message
from tests.peers.smpp34_peer import Smpp34Peer, free_port


@pytest.fixture
async def peer() -> AsyncIterator[Smpp34Peer]:
    p = Smpp34Peer()
    await p.start()
    yield p
    await p.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def provider(peer: Smpp34Peer, recorder: Recorder) -> AsyncIterator[SmppProvider]:
    p = make_provider(peer.port, recorder)
    await p.start()
    yield p
    await p.close()


async def test_plain_gsm_and_its_receipt(
    peer: Smpp34Peer, provider: SmppProvider, recorder: Recorder
) -> None:
    result = await provider.send(message("Hello from Nudge @ £5"))
    assert (result.provider, result.encoding, result.parts) == ("smpp", "gsm7", 1)
    [sub] = await peer.wait_for_submits(1)
    assert (sub.destination, sub.dest_addr_ton, sub.dest_addr_npi) == ("14155550123", 1, 1)
    assert (sub.source, sub.data_coding, sub.esm_class, sub.registered_delivery) == (
        "NUDGE",
        0,
        0,
        1,
    )
    assert sub.short_message == b"Hello from Nudge \x00 \x015"
    assert result.provider_id == sub.message_id
    await recorder.wait(receipts=1)
    [receipt] = recorder.receipts
    assert (receipt.smsc_id, receipt.stat, receipt.state) == (
        sub.message_id,
        "DELIVRD",
        "delivered",
    )


async def test_extension_chars_at_a_part_boundary(
    peer: Smpp34Peer, provider: SmppProvider, recorder: Recorder
) -> None:
    text = "a" * 152 + "€{}" + "b" * 20
    result = await provider.send(message(text))
    subs = await peer.wait_for_submits(2)
    assert (result.encoding, result.parts) == ("gsm7", 2)
    assert [s.esm_class for s in subs] == [0x40, 0x40]
    assert [s.concat[1:] if s.concat else None for s in subs] == [(2, 1), (2, 2)]
    assert subs[0].body == b"a" * 152  # the escape pair did not straddle the parts
    assert subs[1].body[:2] == bytes((ESC, 0x65))
    assert "".join(s.text for s in subs) == text
    await recorder.wait(receipts=2)
    assert sorted(r.smsc_id for r in recorder.receipts) == sorted(result.part_ids)
    assert result.part_ids == [s.message_id for s in subs]


async def test_emoji_in_three_ucs2_parts(peer: Smpp34Peer, provider: SmppProvider) -> None:
    text = "Ж" * 66 + "😀" + "Привет 🎉 " * 12
    result = await provider.send(message(text))
    subs = await peer.wait_for_submits(3)
    assert (result.encoding, result.parts) == ("ucs2", 3)
    assert {s.data_coding for s in subs} == {8}
    refs = {s.concat[0] for s in subs if s.concat}
    assert len(refs) == 1 and [s.concat[1:] for s in subs if s.concat] == [(3, 1), (3, 2), (3, 3)]
    for sub in subs:
        sub.body.decode("utf-16-be")  # strict: every part stands alone
        assert len(sub.short_message) <= 140
    assert subs[1].text.startswith("😀")
    assert "".join(s.text for s in subs) == text


async def test_mo_stop_reaches_on_inbound(
    peer: Smpp34Peer, provider: SmppProvider, recorder: Recorder
) -> None:
    await peer.send_mo(PHONE, "NUDGE", "Stop please")
    await recorder.wait(inbound=1)
    [mo] = recorder.inbound
    assert (mo.sender, mo.destination, mo.text) == (PHONE, "NUDGE", "Stop please")
    assert classify(mo.text, None) == "stop"


async def test_deliver_sm_resp_waits_for_the_callback(
    peer: Smpp34Peer, provider: SmppProvider, recorder: Recorder
) -> None:
    recorder.hold_inbound = asyncio.Event()
    mo = asyncio.create_task(peer.send_mo(PHONE, "NUDGE", "HELP"))
    await recorder.wait(holding=1)  # the callback runs (and is held) ...
    await asyncio.sleep(0)
    assert not mo.done()  # ... and the SMSC has no deliver_sm_resp yet
    recorder.hold_inbound.set()
    await mo  # answered once the callback returned
    assert [m.text for m in recorder.inbound] == ["HELP"]


async def test_failed_callback_asks_for_redelivery(
    peer: Smpp34Peer, provider: SmppProvider, recorder: Recorder
) -> None:
    recorder.fail_inbound = 1
    with pytest.raises(RuntimeError, match="0x64"):  # ESME_RX_T_APPN: SMSC retries later
        await peer.send_mo(PHONE, "NUDGE", "STOP")
    await peer.send_mo(PHONE, "NUDGE", "STOP")  # the redelivery is stored and acknowledged
    assert [m.text for m in recorder.inbound] == ["STOP"]


async def test_receipt_before_submit_resp_is_not_lost(recorder: Recorder) -> None:
    peer = Smpp34Peer(receipt_first=True)
    await peer.start()
    provider = make_provider(peer.port, recorder)
    try:
        await provider.start()
        result = await provider.send(message("race"))
        await recorder.wait(receipts=1)
        assert recorder.receipts[0].smsc_id == result.provider_id
    finally:
        await provider.close()
        await peer.close()


async def test_throttled_every_fifth_submit_each_message_once(recorder: Recorder) -> None:
    peer = Smpp34Peer(throttle_every=5)
    await peer.start()
    # retries: a resent part can hit another 5th slot; never give up inside this test
    provider = make_provider(peer.port, recorder, window=4, throttle_retries=20)
    try:
        await provider.start()
        texts = [f"message {i}" for i in range(20)]
        results = await asyncio.gather(
            *(provider.send(message(t, message_id=f"id-{i}")) for i, t in enumerate(texts))
        )
        assert peer.throttled >= 4
        assert Counter(s.text for s in peer.submits) == Counter(texts)
        assert len({r.provider_id for r in results}) == 20
    finally:
        await provider.close()
        await peer.close()


async def test_persistent_throttling_raises_throttled(recorder: Recorder) -> None:
    peer = Smpp34Peer(throttle_every=1)
    await peer.start()
    provider = make_provider(peer.port, recorder)
    try:
        await provider.start()
        with pytest.raises(ThrottledError) as info:
            await provider.send(message("never accepted"))
        assert info.value.code == "ESME_RTHROTTLED" and info.value.retry_after
        assert peer.throttled == 4 and peer.submits == []  # 1 try + 3 internal retries
    finally:
        await provider.close()
        await peer.close()


async def test_retry_never_resubmits_an_acknowledged_part(recorder: Recorder) -> None:
    peer = Smpp34Peer(throttle_every=2)  # parts alternate: accepted, throttled, ...
    await peer.start()
    provider = make_provider(peer.port, recorder, throttle_retries=0)
    text = "x" * 400  # 3 parts
    try:
        await provider.start()
        for attempt in (1, 2):
            with pytest.raises(ThrottledError):
                await provider.send(message(text, message_id="m-42", attempt=attempt))
        result = await provider.send(message(text, message_id="m-42", attempt=3))
        assert result.parts == 3
        assert [s.concat[2] for s in peer.submits if s.concat] == [1, 2, 3]  # once each
        assert len({s.concat[0] for s in peer.submits if s.concat}) == 1  # same reference
        assert result.part_ids == [s.message_id for s in peer.submits]
    finally:
        await provider.close()
        await peer.close()


async def test_window_bounds_submits_in_flight(recorder: Recorder) -> None:
    peer = Smpp34Peer(hold=asyncio.Event())  # no submit_sm_resp until the test says so
    await peer.start()
    provider = make_provider(peer.port, recorder, window=3)
    try:
        await provider.start()
        sends = asyncio.gather(
            *(provider.send(message(f"w{i}", message_id=f"w{i}")) for i in range(9))
        )
        await peer.wait_for_in_flight(3)  # the window is full: the other six must wait
        assert peer.hold is not None
        peer.hold.set()
        await sends
        assert peer.max_in_flight == 3
    finally:
        await provider.close()
        await peer.close()


async def test_tps_limit_counts_parts(peer: Smpp34Peer, recorder: Recorder) -> None:
    provider = make_provider(peer.port, recorder, tps=20)  # bursts of 4
    try:
        await provider.start()
        started = time.monotonic()
        await provider.send(message("z" * 1000, message_id="tps"))  # 7 parts
        assert time.monotonic() - started >= (7 - 4) / 20 * 0.9
    finally:
        await provider.close()


async def test_reconnects_and_sends_pending_messages(
    peer: Smpp34Peer, provider: SmppProvider, recorder: Recorder
) -> None:
    await provider.send(message("before", message_id="b"))
    await peer.stop()  # the SMSC vanishes mid-session
    sends = [
        asyncio.create_task(provider.send(message(f"during {i}", message_id=f"d{i}")))
        for i in range(3)
    ]

    async def unbound() -> bool:
        return not provider.bridge.bound

    await eventually(unbound)  # the bridge saw the SMSC go
    assert not any(t.done() for t in sends)  # nothing can be sent meanwhile
    await peer.start()  # same port
    await asyncio.wait_for(asyncio.gather(*sends), 60)
    assert provider.bridge.binds == 2 and peer.binds == 2
    assert Counter(s.text for s in peer.submits) == Counter(
        ["before", "during 0", "during 1", "during 2"]
    )


async def test_unbind_from_the_smsc_is_answered_and_rebound(
    peer: Smpp34Peer, provider: SmppProvider
) -> None:
    await peer.unbind()
    await peer.wait_for_binds(2)
    await provider.send(message("after unbind"))
    assert provider.bridge.binds == 2
    assert [s.text for s in peer.submits] == ["after unbind"]


async def test_unreachable_smsc_gives_retryable(recorder: Recorder) -> None:
    provider = make_provider(free_port(), recorder, submit_timeout=timedelta(seconds=0.3))
    try:
        await provider.start()  # not fatal: keeps trying in the background
        with pytest.raises(RetryableError) as info:
            await provider.send(message("nobody home"))
        assert info.value.code == "smsc_unavailable"
    finally:
        await provider.close()


async def test_request_errors_before_any_submit(
    peer: Smpp34Peer,
    provider: SmppProvider,
) -> None:
    with pytest.raises(InvalidRequestError) as too_long:
        await provider.send(message("a" * 2000))
    assert too_long.value.code == "too_long"
    with pytest.raises(PermanentAddressError):
        await provider.send(message("hi", phone="4155550123"))
    assert peer.submits == []


async def test_send_text_for_auto_replies(peer: Smpp34Peer, provider: SmppProvider) -> None:
    result = await provider.send_text(PHONE, "Reply STOP to unsubscribe.")
    [sub] = await peer.wait_for_submits(1)
    assert (result.provider_id, sub.text) == (sub.message_id, "Reply STOP to unsubscribe.")
