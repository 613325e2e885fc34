"""An in-process SMSC for tests, built on `smpp34.Server` (Rust/tokio SMPP 3.4 engine).

smpp34 keeps every bound session open after `Server.stop()`, so a crash cannot be faked by
stopping it. The peer therefore puts a small TCP relay in front: `port` is the relay's, and
`stop()` closes the relay's listener and every relayed connection at once (the client sees
the SMSC vanish mid-session), `start()` listens again on the same port. The smpp34 engine
behind it runs until `close()`.

    peer = Smpp34Peer(throttle_every=5)
    await peer.start()          # binds 127.0.0.1:<free port>; peer.port
    ...
    await peer.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import smpp34
from smpp34._smpp34 import ESME_RTHROTTLED, TLV_MESSAGE_STATE, TLV_RECEIPTED_MESSAGE_ID

from engine.channels.sms.encoding import concat_info, decode_body, encode_sms, split_udh

WAIT = 60.0
"""Seconds the `wait_for_*` helpers wait before failing (a bound, not an expectation)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RecordedSubmit:
    """One accepted submit_sm as the SMSC saw it."""

    message_id: str
    source: str
    destination: str
    dest_addr_ton: int
    dest_addr_npi: int
    data_coding: int
    esm_class: int
    registered_delivery: int
    short_message: bytes
    udh: bytes
    body: bytes
    text: str  # body decoded per data_coding
    concat: tuple[int, int, int] | None  # (reference, total, seq)


@dataclass
class Smpp34Peer:
    """SMSC double: accepts submits with ids `m1`, `m2`, ...; records them; sends a receipt
    for each when `registered_delivery & 1`; every `throttle_every`-th submit is answered
    ESME_RTHROTTLED instead (0 = never). `receipt_first` sends the receipt before the
    submit_sm_resp, the race a real SMSC can produce. While `hold` is an unset event, every
    accepted submit waits for it before its submit_sm_resp (a slow SMSC the test controls)."""

    throttle_every: int = 0
    receipt_first: bool = False
    accept_delay: float = 0.0  # seconds each submit waits before its submit_sm_resp
    hold: asyncio.Event | None = None
    receipt_stat: str = "DELIVRD"
    port: int = field(default_factory=free_port)
    submits: list[RecordedSubmit] = field(default_factory=list)
    throttled: int = 0
    binds: int = 0
    in_flight: int = 0
    max_in_flight: int = 0  # most submits awaiting their submit_sm_resp at once
    _inner_port: int = field(default_factory=free_port)
    _server: smpp34.Server | None = None
    _relay: asyncio.Server | None = None
    _pipes: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _esmes: dict[str, smpp34.Esme] = field(default_factory=dict)
    _seen: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Start (or, after `stop()`, resume) accepting connections on `self.port`."""
        if self._server is None:
            self._server = smpp34.Server("127.0.0.1", self._inner_port, system_id="peer")
            await self._server.start()
            self._spawn(self._serve())
        self._relay = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Drop every connection and stop listening, like a crashed SMSC."""
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()
        self._esmes.clear()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        """Stop everything, the smpp34 engine included."""
        await self.stop()
        if self._server is not None:
            await self._server.stop()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def unbind(self) -> None:
        """Send `unbind` to every bound ESME (an SMSC going down politely). smpp34 answers
        the ESME's unbind_resp with generic_nack and never completes the call, so this does
        not wait for it. It waits for the first bind to be served: the ESME may see its
        bind_resp before this peer has recorded the session (a race seen on a busy CI)."""
        await self._bound_esme()
        for esme in list(self._esmes.values()):
            self._spawn(self._unbind(esme))

    async def _unbind(self, esme: smpp34.Esme) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(esme.unbind(), 2)

    async def send_mo(self, from_number: str, to: str, text: str) -> None:
        """Push a mobile-originated SMS to the bound ESME (GSM when possible, else UCS-2)."""
        esme = await self._bound_esme()
        sms = encode_sms(text, max_parts=1, reference=0)
        resp = await esme.deliver_sm(
            to,
            sms.parts[0],
            source_addr=from_number.lstrip("+"),
            source_addr_ton=1,
            source_addr_npi=1,
            data_coding=sms.data_coding,
        )
        if not resp.is_success:
            raise RuntimeError(f"deliver_sm rejected: status {resp.command_status:#x}")

    async def send_mo_parts(
        self,
        from_number: str,
        to: str,
        text: str,
        *,
        reference: int,
        sar: bool = False,
        only: tuple[int, ...] | None = None,
    ) -> int:
        """Push a long MO as its parts: each with a concatenation UDH, or (`sar`) with the
        `sar_*` TLVs instead. `only` sends just those parts (1-based), in that order.
        Returns how many parts the message has."""
        esme = await self._bound_esme()
        sms = encode_sms(text, max_parts=10, reference=reference)
        total = sms.part_count
        for seq in only or tuple(range(1, total + 1)):
            extra: dict[str, Any] = {"esm_class": sms.esm_class}
            body = sms.parts[seq - 1]
            if sar:
                body = split_udh(body, sms.esm_class)[1]  # the same text, without the UDH
                extra = {
                    "tlvs": [
                        smpp34.Tlv(0x020C, reference.to_bytes(2, "big")),
                        smpp34.Tlv(0x020E, bytes([total])),
                        smpp34.Tlv(0x020F, bytes([seq])),
                    ]
                }
            resp = await esme.deliver_sm(
                to,
                body,
                source_addr=from_number.lstrip("+"),
                source_addr_ton=1,
                source_addr_npi=1,
                data_coding=sms.data_coding,
                **extra,
            )
            if not resp.is_success:
                raise RuntimeError(f"deliver_sm rejected: status {resp.command_status:#x}")
        return total

    async def wait_for_submits(self, count: int, within: float = WAIT) -> list[RecordedSubmit]:
        """Wait until `count` submits were accepted; returns them."""
        async with asyncio.timeout(within):
            while len(self.submits) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.submits)

    async def wait_for_binds(self, count: int, within: float = WAIT) -> None:
        """Wait until ESMEs have bound `count` times in all (reconnects included)."""
        async with asyncio.timeout(within):
            while self.binds < count:
                self._changed.clear()
                await self._changed.wait()

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_for_in_flight(self, count: int, within: float = WAIT) -> None:
        """Wait until `count` submits await their submit_sm_resp at once (see `hold`)."""
        async with asyncio.timeout(within):
            while self.in_flight < count:
                self._changed.clear()
                await self._changed.wait()

    async def _bound_esme(self, within: float = WAIT) -> smpp34.Esme:
        async with asyncio.timeout(within):
            while not self._esmes:
                self._changed.clear()
                await self._changed.wait()
        return list(self._esmes.values())[-1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._inner_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))
        self._spawn(self._pipe(reader, up_writer))
        self._spawn(self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._pipes.discard(writer)
            writer.transport.abort()

    async def _serve(self) -> None:
        assert self._server is not None
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.Esme):
                self.binds += 1
                self._esmes[event.session_id] = event
            elif isinstance(event, smpp34.Unbound):
                self._esmes.pop(event.session_id, None)
            elif isinstance(event, smpp34.SubmitSmEvent):
                self._seen += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                if self.throttle_every and self._seen % self.throttle_every == 0:
                    self.throttled += 1
                    self.in_flight -= 1
                    event.reject(ESME_RTHROTTLED)
                else:
                    self._spawn(self._accept_submit(event))
            self._changed.set()

    async def _accept_submit(self, event: smpp34.SubmitSmEvent) -> None:
        if self.accept_delay:
            await asyncio.sleep(self.accept_delay)
        if self.hold is not None:
            await self.hold.wait()
        message_id = f"m{next(self._ids)}"
        udh, body = split_udh(event.short_message, event.esm_class)
        self.submits.append(
            RecordedSubmit(
                message_id=message_id,
                source=event.source_addr,
                destination=event.destination_addr,
                dest_addr_ton=event.dest_addr_ton,
                dest_addr_npi=event.dest_addr_npi,
                data_coding=event.data_coding,
                esm_class=event.esm_class,
                registered_delivery=event.registered_delivery,
                short_message=event.short_message,
                udh=udh,
                body=body,
                text=decode_body(body, event.data_coding),
                concat=concat_info(udh),
            )
        )
        wants_receipt = bool(event.registered_delivery & 1)
        if self.receipt_first and wants_receipt:
            await self._receipt(event, message_id)
        event.accept(message_id=message_id)
        self.in_flight -= 1
        self._changed.set()
        if wants_receipt and not self.receipt_first:
            await self._receipt(event, message_id)

    async def _receipt(self, event: smpp34.SubmitSmEvent, message_id: str) -> None:
        esme = self._esmes.get(event.session_id)
        if esme is None:
            return
        stat = self.receipt_stat
        state = {"DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5, "REJECTD": 8}.get(stat, 7)
        text = (
            f"id:{message_id} sub:001 dlvrd:{'001' if state == 2 else '000'} "
            f"submit date:2611280900 done date:2611280900 stat:{stat} err:000 text:"
        )
        with contextlib.suppress(Exception):  # the session may be gone (peer stopped)
            await esme.deliver_sm(
                event.source_addr,
                text.encode("ascii"),
                source_addr=event.destination_addr,
                source_addr_ton=1,
                source_addr_npi=1,
                esm_class=0x04,
                tlvs=[
                    smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
                    smpp34.Tlv(TLV_MESSAGE_STATE, bytes((state,))),
                ],
            )
