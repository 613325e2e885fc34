"""SmppProvider against the npm `smpp` SMSC in its own process: an independent SMPP stack
decodes what we send (GSM 03.38, UCS-2, UDH), checks our password, and keeps the link
alive with its own enquire_link."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from engine.channels.base import ThrottledError
from engine.channels.sms.bridge import BindError
from engine.channels.sms.provider import SmppProvider
from tests.kit.sms import PHONE, Recorder, make_provider, message
from tests.peers.node_peer import NodeSmscPeer

PASSWORD = "s3cret"


@pytest.fixture
async def node() -> AsyncIterator[NodeSmscPeer]:
    peer = NodeSmscPeer(password=PASSWORD, enquire_ms=100)
    await peer.start()
    yield peer
    await peer.stop()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def provider(node: NodeSmscPeer, recorder: Recorder) -> AsyncIterator[SmppProvider]:
    p = make_provider(node.port, recorder, password=PASSWORD)
    await p.start()
    yield p
    await p.close()


async def test_wrong_password_is_a_clear_bind_error(node: NodeSmscPeer, recorder: Recorder) -> None:
    provider = make_provider(node.port, recorder, password="wrong")
    with pytest.raises(BindError, match=r"ESME_RBINDFAIL.*password.*NUDGE_SMPP_PASSWORD"):
        await provider.start()
    assert (await node.wait_for("bind"))["ok"] is False


async def test_node_decodes_gsm_ucs2_and_udh(
    node: NodeSmscPeer, provider: SmppProvider, recorder: Recorder
) -> None:
    assert (await node.wait_for("bind"))["ok"] is True
    cases = [
        ("Hi Ana, 20% off: £5 {today} [only] ~ ^ | \\ €", "gsm7", 1),
        ("a" * 152 + "€{}" + "b" * 20, "gsm7", 2),
        ("Ж" * 66 + "😀" + "Привет 🎉 " * 12, "ucs2", 3),
    ]
    seen = 0
    for i, (text, encoding, parts) in enumerate(cases):
        result = await provider.send(message(text, message_id=f"node-{i}"))
        assert (result.encoding, result.parts) == (encoding, parts)
        seen += parts
        submits = [await node.wait_for("submit", n) for n in range(seen - parts + 1, seen + 1)]
        assert "".join(s["text"] for s in submits) == text  # as node-smpp decoded it
        assert {s["data_coding"] for s in submits} == {0 if encoding == "gsm7" else 8}
        assert all(s["destination"] == "14155550123" for s in submits)
        assert all((s["dest_addr_ton"], s["dest_addr_npi"]) == (1, 1) for s in submits)
        if parts > 1:
            assert [tuple(s["concat"][1:]) for s in submits] == [
                (parts, seq) for seq in range(1, parts + 1)
            ]
            assert all(s["esm_class"] & 0x40 for s in submits)
        else:
            assert submits[0]["udh"] == [] and submits[0]["concat"] is None
        assert result.part_ids == [s["id"] for s in submits]
    await recorder.wait(receipts=seen)
    assert sorted(r.smsc_id for r in recorder.receipts) == sorted(
        f"n{i}" for i in range(1, seen + 1)
    )
    await node.wait_for("receipt_resp", seen)
    assert {e["status"] for e in node.of("receipt_resp")} == {0}


async def test_node_enquire_link_is_answered(node: NodeSmscPeer, provider: SmppProvider) -> None:
    await node.wait_for("enquire_link_resp", 3)
    assert {e["status"] for e in node.of("enquire_link_resp")} == {0}
    assert provider.bridge.bound


async def test_we_send_enquire_link_when_idle(recorder: Recorder) -> None:
    node = NodeSmscPeer(password=PASSWORD, enquire_ms=0)
    await node.start()
    provider = make_provider(
        node.port, recorder, password=PASSWORD, enquire_link=timedelta(seconds=0.2)
    )
    try:
        await provider.start()
        await node.wait_for("enquire_link", 2)
        assert provider.bridge.bound and provider.bridge.binds == 1
    finally:
        await provider.close()
        await node.stop()


async def test_mo_from_node_reaches_on_inbound(
    node: NodeSmscPeer, provider: SmppProvider, recorder: Recorder
) -> None:
    await node.wait_for("bind")
    await node.send_mo(PHONE, "NUDGE", "STOP")
    await recorder.wait(inbound=1)
    assert [(m.sender, m.text) for m in recorder.inbound] == [(PHONE, "STOP")]
    assert (await node.wait_for("mo_resp"))["status"] == 0


async def test_throttled_destination(node: NodeSmscPeer, provider: SmppProvider) -> None:
    with pytest.raises(ThrottledError):
        await provider.send(message("hi", phone="+99912345678"))
    await node.wait_for("throttled", 4)  # its stdout may lag behind its answers
    assert len(node.of("throttled")) == 4  # 1 try + 3 internal retries


async def test_close_unbinds(node: NodeSmscPeer, recorder: Recorder) -> None:
    provider = make_provider(node.port, recorder, password=PASSWORD)
    await provider.start()
    await provider.close()
    await node.wait_for("unbind")
