"""The console channel: prints each message and lets the pipeline store it (`nudge dev`)."""

from __future__ import annotations

import sys
from typing import TextIO

from engine.channels.base import ChannelProvider, OutboundMessage, ProviderResult


class ConsoleProvider(ChannelProvider):
    """Delivers to a terminal (`provider = "console"`). Message text is personal data: it is
    printed only with `show_bodies` (what `nudge dev` and tests use); otherwise each message
    is one line of ids."""

    name = "console"
    KEPT = 1_000
    """How many of the latest messages `sent` holds (a list, for tests and the test kit): a
    `nudge dev` left running for weeks must not hold every message it ever printed."""

    def __init__(self, stream: TextIO | None = None, *, show_bodies: bool = False) -> None:
        self._stream = stream
        self._show_bodies = show_bodies or stream is not None
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> ProviderResult:
        self.sent.append(message)
        if len(self.sent) > self.KEPT:
            del self.sent[0]
        stream = self._stream or sys.stdout
        content = message.content
        text = content.sms if message.address.channel == "sms" else content.body
        head = f"[console {message.address.channel}] {message.message_id}"
        if not self._show_bodies:
            print(f"{head} (body not shown outside `nudge dev`)", file=stream, flush=True)
        else:
            title = f" {content.title!r}" if content.title else ""
            print(f"{head}{title} {text!r}", file=stream, flush=True)
        return ProviderResult(provider=self.name, provider_id=message.message_id)
