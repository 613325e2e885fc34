"""engine.channels.console: each message is one printed line (its text only where bodies
may be shown), and the provider keeps only the latest `KEPT` messages it sent."""

from __future__ import annotations

import io

import pytest

from engine.channels.base import Address, Content, OutboundMessage
from engine.channels.console import ConsoleProvider
from schemas.common import Channel


def _sms(n: int) -> OutboundMessage:
    return OutboundMessage(
        message_id=f"msg_{n}",
        address=Address(channel=Channel.SMS, phone="+15555550100"),
        content=Content(sms=f"Your code is {n}"),
    )


async def test_it_keeps_only_the_latest_messages() -> None:
    console = ConsoleProvider(io.StringIO())
    for n in range(ConsoleProvider.KEPT + 5):
        await console.send(_sms(n))
    assert len(console.sent) == ConsoleProvider.KEPT
    assert [console.sent[0].message_id, console.sent[-1].message_id] == [
        "msg_5",
        f"msg_{ConsoleProvider.KEPT + 4}",
    ]


async def test_a_body_is_printed_only_where_bodies_may_be_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = io.StringIO()
    await ConsoleProvider(shown).send(_sms(1))
    await ConsoleProvider().send(_sms(2))
    assert "Your code is 1" in shown.getvalue()
    printed = capsys.readouterr().out
    assert "msg_2" in printed and "Your code is" not in printed
