"""The console channel: prints each message and lets the pipeline store it (`nudge dev`)."""

from __future__ import annotations

import sys
from typing import TextIO

from engine.channels.base import ChannelProvider, OutboundMessage, ProviderResult


class ConsoleProvider(ChannelProvider):
    """Delivers to a terminal. This is a development sink: it shows message text, which is
    why it never runs in production configurations (`provider = "console"` only)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> ProviderResult:
        self.sent.append(message)
        stream = self._stream or sys.stdout
        content = message.content
        text = content.sms if message.address.channel == "sms" else content.body
        head = f"[console {message.address.channel}] {message.message_id}"
        title = f" {content.title!r}" if content.title else ""
        print(f"{head}{title} {text!r}", file=stream, flush=True)
        return ProviderResult(provider=self.name, provider_id=message.message_id)
