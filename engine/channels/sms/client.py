"""A thread-safe `smpplib` client, and SMPP command_status names.

smpplib writes from whichever thread calls it and its sequence generator is unlocked; the
bridge writes from the event loop's writer thread and from the reader thread (keep-alive,
`enquire_link_resp`, `unbind_resp`), so writes and sequence numbers are serialised here.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

WIRE_LOGGER = "nudge.smpp.wire"
# smpplib logs every PDU as hex at DEBUG, numbers and message text included: keep that out of
# logs unless an operator lowers this logger's level on purpose.
logging.getLogger(WIRE_LOGGER).setLevel(logging.INFO)

# {0x58: "ESME_RTHROTTLED", ...}: stable codes for errors and logs.
STATUS_NAMES: dict[int, str] = {
    value: name.removeprefix("SMPP_")
    for name, value in vars(smpplib.consts).items()
    if name.startswith("SMPP_ESME_") and isinstance(value, int)
}

ESME_ROK = 0x00
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RINVDSTADR = 0x0B
ESME_RINVCMDID = 0x03
ESME_RX_T_APPN = 0x64  # "temporary application error": the SMSC redelivers
ESME_RX_P_APPN = 0x65  # "permanent application error": the SMSC gives up
MAX_PDU_OCTETS = 65536


def pdu_text(value: bytes | str | None) -> str:
    """A C-octet-string field as smpplib parsed it (bytes, NUL-terminated) as text."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return (value or "").rstrip("\x00")


def source_ton_npi(source: str) -> tuple[int, int]:
    """TON/NPI for a sender: alphanumeric (5, 0), short code (3, 0), else international."""
    digits = source.lstrip("+")
    if not digits.isdigit():
        return 5, 0
    return (3, 0) if len(digits) <= 8 else (1, 1)


def status_name(status: int) -> str:
    """`ESME_*` name of a command_status, or `ESME_0x...` for a vendor code."""
    return STATUS_NAMES.get(status, f"ESME_{status:#010x}")


class LockedSequenceGenerator(smpplib.client.SimpleSequenceGenerator):  # type: ignore[misc]
    """smpplib's generator behind a lock; shared by every connection of one bridge, so a
    late response from a dead connection can never match a new request's sequence."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def next_sequence(self) -> int:
        with self._lock:
            return int(super().next_sequence())


class ThreadSafeClient(smpplib.client.Client):  # type: ignore[misc]
    _socket: socket.socket | None

    """`smpplib.client.Client` whose writes hold a lock and whose reads survive a timeout
    in the middle of a PDU (smpplib drops the partial bytes and desynchronises)."""

    def __init__(
        self, host: str, port: int, *, timeout: float, sequence_generator: LockedSequenceGenerator
    ) -> None:
        super().__init__(
            host,
            port,
            timeout=timeout,
            sequence_generator=sequence_generator,
            logger_name=WIRE_LOGGER,
            allow_unknown_opt_params=True,
        )
        self._write_lock = threading.Lock()
        # The library's default raises out of listen() and kills a reader thread on the first
        # throttled response; we dispatch responses ourselves, this is belt and braces.
        self.set_error_pdu_handler(lambda pdu: None)

    def _create_socket(self) -> socket.socket:
        sock: socket.socket = super()._create_socket()
        # Small PDUs, request/response: without this Nagle + delayed ACK add ~40 ms a submit.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def send_pdu(self, p: Any) -> bool:
        with self._write_lock:
            if self._socket is None:
                raise smpplib.exceptions.ConnectionError("not connected")
            return bool(super().send_pdu(p))

    def disconnect(self) -> None:
        """Close the socket (smpplib's version warns when the SMSC dropped us first)."""
        with self._write_lock:  # never pull the socket from under a writer
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            self.state = smpplib.consts.SMPP_CLIENT_STATE_CLOSED

    def _recv(self, size: int, *, idle_ok: bool) -> bytes:
        """Read exactly `size` octets. `socket.timeout` escapes only when nothing of this
        PDU has arrived yet (`idle_ok`): that is idleness, which the caller turns into an
        enquire_link. A timeout mid-PDU keeps waiting, up to 3 socket timeouts."""
        sock: socket.socket | None = self._socket
        if sock is None:
            raise smpplib.exceptions.ConnectionError("not connected")
        chunks: list[bytes] = []
        received = stalls = 0
        while received < size:
            try:
                chunk = sock.recv(size - received)
            except TimeoutError:
                if idle_ok and received == 0:
                    raise
                stalls += 1
                if stalls >= 3:
                    raise smpplib.exceptions.ConnectionError("peer stalled mid-PDU") from None
                continue
            except OSError as exc:
                raise smpplib.exceptions.ConnectionError(str(exc)) from exc
            if not chunk:
                raise smpplib.exceptions.ConnectionError("connection closed by the SMSC")
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)

    def read_pdu(self) -> Any:
        """Read and parse one PDU; raises `socket.timeout` only when the link is idle."""
        header = self._recv(4, idle_ok=True)
        (length,) = struct.unpack(">L", header)
        if not 16 <= length <= MAX_PDU_OCTETS:
            raise smpplib.exceptions.ConnectionError(f"broken PDU length {length}")
        raw = header + self._recv(length - 4, idle_ok=False)
        pdu = smpplib.smpp.parse_pdu(raw, client=self, allow_unknown_opt_params=True)
        if not pdu.is_error() and pdu.command in smpplib.consts.STATE_SETTERS:
            self.state = smpplib.consts.STATE_SETTERS[pdu.command]
        return pdu

    def respond(self, command: str, sequence: int, status: int = ESME_ROK) -> None:
        """Send a response PDU (`deliver_sm_resp`, `unbind_resp`, `generic_nack`, ...)."""
        resp = smpplib.smpp.make_pdu(command, client=self, status=status)
        resp.sequence = sequence
        self.send_pdu(resp)

    def shutdown(self) -> None:
        """Wake a blocked reader: its recv() returns EOF and the read loop ends."""
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)
