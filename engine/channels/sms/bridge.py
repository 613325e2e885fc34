"""`SmppBridge`: one long-lived transceiver bind to an SMSC, blocking smpplib under asyncio.

Threads: ONE reader thread per connection blocks in `read_pdu()` and hands everything to
the event loop; every write from the loop goes through one writer thread (so submits leave
in the order they were made); the reader also writes keep-alives and protocol answers,
serialised with the loop's writes by `ThreadSafeClient`'s lock.

Flow control: at most `SmsChannel.window` submit_sm in flight, and `SmsChannel.tps` parts per
second (a `TokenBucket` counted in parts: one token per submit_sm). A submit waits for a
bind for at most `submit_timeout`, then raises `RetryableError`. If the connection drops with
a submit unanswered, it is sent again once the bind is back (within the same
`submit_timeout`): at-least-once, as SMSCs expect.

Inbound: each deliver_sm becomes a `Receipt` or `InboundSms` and is handed to the async
callbacks; `deliver_sm_resp` goes out only after the callback returned, with
ESME_RX_T_APPN if it raised, so the SMSC redelivers whatever we failed to store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import smpplib.exceptions
import smpplib.smpp

from engine.channels.base import RetryableError, UnknownOutcomeError
from engine.channels.ratelimit import TokenBucket
from engine.channels.sms.client import (
    ESME_RINVCMDID,
    ESME_ROK,
    ESME_RX_P_APPN,
    ESME_RX_T_APPN,
    LockedSequenceGenerator,
    ThreadSafeClient,
    pdu_text,
    source_ton_npi,
    status_name,
)
from engine.channels.sms.inbound import parse_deliver_pdu
from engine.config.nudge_toml import SmsChannel
from engine.observability.metrics import SMPP_BOUND
from schemas.sms import InboundSms, Receipt

log = logging.getLogger("nudge.smpp")

ReceiptHandler = Callable[[Receipt], Awaitable[None]]
InboundHandler = Callable[[InboundSms], Awaitable[None]]
_LINK_ERRORS = (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError)


class SmppStatusError(Exception):
    """The SMSC answered a submit_sm with an error `status` (`name` = ESME_* name)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.name = status_name(status)
        super().__init__(self.name)


class BindError(Exception):
    """The SMSC refused the bind (wrong system_id/password, ...): no retry will fix it."""


class _LinkLost(Exception):
    pass


class SmppBridge:
    """One bind per SMSC account, owned by the worker process; `start()` in its loop."""

    _loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        settings: SmsChannel,
        password: str,
        *,
        on_receipt: ReceiptHandler,
        on_inbound: InboundHandler,
        limiter: TokenBucket | None = None,
        backoff: tuple[float, float] = (0.1, 30.0),
    ) -> None:
        self.settings = settings
        self._password = password
        self._on_receipt = on_receipt
        self._on_inbound = on_inbound
        # Bursts of a fifth of a second's worth, so an SMSC counting per second never sees
        # much more than `tps`.
        self._limiter = limiter or TokenBucket(settings.tps, max(1.0, settings.tps / 5))
        self._backoff = backoff  # (first, max) seconds between reconnects, doubled each time
        self._submit_timeout = settings.submit_timeout.total_seconds()
        self._keepalive = settings.enquire_link.total_seconds()
        self._sequences = LockedSequenceGenerator()
        self._window = asyncio.Semaphore(settings.window)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smpp-writer")
        self._pending: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: ThreadSafeClient | None = None
        self._bound = asyncio.Event()
        self._down = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._reader: threading.Thread | None = None
        self.binds = 0  # successful binds so far (reconnects = binds - 1)

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    async def start(self) -> None:
        """Bind, waiting up to `submit_timeout`. Raises `BindError` if the SMSC refuses the
        credentials; if it is merely unreachable, returns and keeps trying in the background
        (sends wait for the bind)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._first = loop.create_future()
        self._supervisor = loop.create_task(self._run(), name="smpp-supervisor")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._first), self._submit_timeout)
        if self._first.done() and self._first.exception() is not None:
            await self.close()
            raise self._first.exception()  # type: ignore[misc]

    async def close(self) -> None:
        """Finish inbound callbacks in progress (2 s at most), unbind politely (1 s at most;
        smpp34 closes without unbind_resp), then stop the threads."""
        self._closing = True
        if self._tasks:  # let receipts/MOs being stored get their deliver_sm_resp
            await asyncio.wait(list(self._tasks), timeout=2.0)
        client = self._client
        if client is not None and self.bound:
            with contextlib.suppress(*_LINK_ERRORS, RuntimeError):
                unbind = smpplib.smpp.make_pdu("unbind", client=client)
                await self._loop.run_in_executor(self._writer, client.send_pdu, unbind)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._down.wait(), 1.0)
            client.shutdown()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        self._fail_pending()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5.0)
        self._writer.shutdown(wait=False)

    async def submit(
        self,
        *,
        destination: str,
        short_message: bytes,
        data_coding: int,
        esm_class: int,
        dest_addr_ton: int = 1,
        dest_addr_npi: int = 1,
        priority: bool = False,
    ) -> str:
        """Submit one part; returns the SMSC's message id. Raises `SmppStatusError` for an
        error status and `RetryableError` ("smsc_unavailable", "submit_timeout") when no
        answer came within `submit_timeout` seconds of the call (rate-limit wait excluded).
        `priority`: a transactional part, ahead of the parts waiting for the bind's rate."""
        loop = asyncio.get_running_loop()
        await self._limiter.acquire(priority=priority)
        deadline = loop.time() + self._submit_timeout
        s = self.settings
        src_ton, src_npi = source_ton_npi(s.source_addr)
        params: dict[str, Any] = dict(
            source_addr=s.source_addr,
            source_addr_ton=src_ton if s.source_addr_ton is None else s.source_addr_ton,
            source_addr_npi=src_npi if s.source_addr_npi is None else s.source_addr_npi,
            destination_addr=destination,
            dest_addr_ton=dest_addr_ton,
            dest_addr_npi=dest_addr_npi,
            esm_class=esm_class,
            data_coding=data_coding,
            registered_delivery=1 if s.registered_delivery else 0,
            short_message=short_message,
        )
        async with self._window:
            while True:
                try:
                    await asyncio.wait_for(self._bound.wait(), deadline - loop.time())
                except TimeoutError:
                    raise RetryableError(
                        "smsc_unavailable", "no bind within submit_timeout"
                    ) from None
                client = self._client
                if client is None:
                    continue
                pdu = smpplib.smpp.make_pdu("submit_sm", client=client, **params)
                future: asyncio.Future[tuple[int, str]] = loop.create_future()
                self._pending[pdu.sequence] = future
                try:
                    await loop.run_in_executor(self._writer, client.send_pdu, pdu)
                    status, message_id = await asyncio.wait_for(future, deadline - loop.time())
                except (_LinkLost, *_LINK_ERRORS):
                    # Unanswered: send it again once the bind is back (at-least-once).
                    client.shutdown()
                    self._link_down(client)
                    continue
                except TimeoutError:
                    raise UnknownOutcomeError(
                        "submit_timeout", "no submit_sm_resp in time"
                    ) from None
                finally:
                    self._pending.pop(pdu.sequence, None)
                if status != ESME_ROK:
                    raise SmppStatusError(status)
                return message_id

    # -- connection supervisor (event loop) --------------------------------------------------

    async def _run(self) -> None:
        delay = self._backoff[0]
        while not self._closing:
            try:
                client = await asyncio.to_thread(self._open)
            except BindError as exc:
                if self._first is not None and not self._first.done():
                    self._first.set_exception(exc)
                    return
                log.error("SMPP bind refused: %s; retrying in %.1fs", exc, delay)
            except _LINK_ERRORS as exc:
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)  # unreachable is not fatal: keep trying
                log.warning(
                    "SMPP connect to %s:%s failed (%s); retrying in %.1fs",
                    self.settings.host,
                    self.settings.port,
                    exc,
                    delay,
                )
            else:
                delay = self._backoff[0]
                self._down.clear()
                self._client = client
                self.binds += 1
                self._reader = threading.Thread(
                    target=self._read_loop,
                    args=(client,),
                    daemon=True,
                    name=f"smpp-reader-{self.settings.system_id}",
                )
                self._reader.start()
                self._bound.set()
                SMPP_BOUND.labels(self.settings.system_id).set(1)
                log.info(
                    "SMPP bound to %s:%s as %s",
                    self.settings.host,
                    self.settings.port,
                    self.settings.system_id,
                )
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)
                await self._down.wait()
                if self._closing:
                    return
            await asyncio.sleep(delay * random.uniform(1.0, 1.25))
            delay = min(delay * 2, self._backoff[1])

    def _open(self) -> ThreadSafeClient:
        """Connect and bind_transceiver (blocking, in a worker thread)."""
        s = self.settings
        client = ThreadSafeClient(
            s.host,
            s.port,
            timeout=min(self._submit_timeout, 10.0),
            sequence_generator=self._sequences,
        )
        try:
            client.connect()
            client.bind_transceiver(
                system_id=s.system_id, password=self._password, system_type=s.system_type
            )
        except smpplib.exceptions.PDUError as exc:
            client.disconnect()
            status = exc.args[1] if len(exc.args) > 1 else 0
            raise BindError(
                f"{status_name(status)}: the SMSC refused system_id "
                f"{s.system_id!r} (check the password in ${s.password_env})"
            ) from exc
        except BaseException:
            client.disconnect()
            raise
        assert client._socket is not None
        client._socket.settimeout(self._keepalive)  # an idle read this long -> enquire_link
        return client

    def _link_down(self, client: ThreadSafeClient) -> None:
        if client is not self._client:
            return
        self._client = None
        self._bound.clear()
        SMPP_BOUND.labels(self.settings.system_id).set(0)
        self._fail_pending()
        self._down.set()
        if not self._closing:
            log.warning("SMPP link to %s:%s lost", self.settings.host, self.settings.port)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(_LinkLost())

    # -- reader thread -----------------------------------------------------------------------

    def _read_loop(self, client: ThreadSafeClient) -> None:
        awaiting_link = False
        try:
            while True:
                try:
                    pdu = client.read_pdu()
                except TimeoutError:
                    if awaiting_link:
                        log.warning("SMPP enquire_link unanswered; dropping the link")
                        return
                    client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
                    awaiting_link = True
                    continue
                awaiting_link = False  # any PDU proves the link alive
                if not self._dispatch(client, pdu):
                    return
        except (*_LINK_ERRORS, AttributeError) as exc:
            if not self._closing:
                log.info("SMPP reader stopped: %s", exc)
        except Exception:  # e.g. a PDU smpplib cannot parse: start over on a fresh bind
            log.exception("SMPP reader failed; reconnecting")
        finally:
            with contextlib.suppress(Exception):
                client.disconnect()
            self._loop.call_soon_threadsafe(self._link_down, client)

    def _dispatch(self, client: ThreadSafeClient, pdu: Any) -> bool:
        """Handle one PDU in the reader thread; False ends the connection."""
        command, sequence, status = pdu.command, pdu.sequence, int(pdu.status or 0)
        if command in ("submit_sm_resp", "generic_nack"):
            message_id = pdu_text(getattr(pdu, "message_id", None))
            self._loop.call_soon_threadsafe(self._resolve, sequence, status, message_id)
        elif command == "deliver_sm":
            try:
                item = parse_deliver_pdu(pdu)
            except ValueError as exc:
                log.warning("SMPP deliver_sm refused: %s", exc)
                client.respond("deliver_sm_resp", sequence, ESME_RX_P_APPN)
            else:
                self._loop.call_soon_threadsafe(self._spawn_delivery, client, sequence, item)
        elif command == "enquire_link":
            client.respond("enquire_link_resp", sequence)
        elif command == "unbind":
            log.info("SMPP unbind from the SMSC; reconnecting")
            client.respond("unbind_resp", sequence)
            return False
        elif command == "unbind_resp":
            return False
        elif command in ("enquire_link_resp", "alert_notification"):
            pass
        elif pdu.is_request():
            client.respond("generic_nack", sequence, ESME_RINVCMDID)
        return True

    # -- back on the event loop --------------------------------------------------------------

    def _resolve(self, sequence: int, status: int, message_id: str) -> None:
        future = self._pending.pop(sequence, None)
        if future is not None and not future.done():
            future.set_result((status, message_id))

    def _spawn_delivery(
        self, client: ThreadSafeClient, sequence: int, item: Receipt | InboundSms
    ) -> None:
        task = self._loop.create_task(self._deliver(client, sequence, item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, client: ThreadSafeClient, sequence: int, item: Receipt | InboundSms
    ) -> None:
        try:
            if isinstance(item, Receipt):
                await self._on_receipt(item)
            else:
                await self._on_inbound(item)
            status = ESME_ROK
        except Exception:
            log.exception(
                "SMPP %s handler failed; asking the SMSC to redeliver",
                "receipt" if isinstance(item, Receipt) else "inbound",
            )
            status = ESME_RX_T_APPN
        try:
            await self._loop.run_in_executor(
                self._writer, client.respond, "deliver_sm_resp", sequence, status
            )
        except (*_LINK_ERRORS, RuntimeError) as exc:
            log.info("SMPP deliver_sm_resp not sent (%s); the SMSC will redeliver", exc)
