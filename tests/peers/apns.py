"""An APNs-shaped HTTP/2 + TLS server for tests (asyncio + h2, not hypercorn: see notes §1.6).

It generates, at construction, a P-256 signing key (stand-in for `AuthKey_<key_id>.p8`) and,
at start, a throw-away CA and a server certificate for `localhost` / `127.0.0.1`. It checks
the ES256 bearer JWT like Apple does, echoes `apns-id`, answers 200 as HEADERS+END_STREAM and
errors as one JSON DATA frame (what aioapns needs), and records every request in `received`.

Device-token prefix selects the answer:
  bad*        400 BadDeviceToken            othertopic*  400 DeviceTokenNotForTopic
  gone*       410 Unregistered + timestamp  throttle*    429 TooManyRequests once, then 200
  error*      500 InternalServerError       unavailable* 503 ServiceUnavailable
  slow*       200 after `slow_delay` s      goaway*      GOAWAY, connection closed
  hang*       the first request of each token is never answered (held until the connection
              closes: a provider or worker that dies mid-send); later ones 200 at once
Other checks: wrong topic 400 BadTopic, body > 4096 bytes 413 PayloadTooLarge, bad or missing
JWT 403 InvalidProviderToken / MissingProviderToken / ExpiredProviderToken.

Use:  async with ApnsPeer() as peer:  ApnsProvider(peer.settings(timeout="1s"))
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import shutil
import ssl
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes

from engine.config.nudge_toml import ApnsSettings
from tests.peers._base import ThreadedPeer

MAX_PAYLOAD = 4096
_ERRORS = {  # token prefix -> (status, reason)
    "bad": (400, "BadDeviceToken"),
    "othertopic": (400, "DeviceTokenNotForTopic"),
    "gone": (410, "Unregistered"),
    "error": (500, "InternalServerError"),
    "unavailable": (503, "ServiceUnavailable"),
}


@dataclass
class ApnsReceived:
    """One request the peer saw, and what it answered."""

    token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    status: int
    """The status answered; 0 for a request held unanswered (`hang*`)."""
    reason: str | None = None
    jwt_header: dict[str, Any] = field(default_factory=dict)
    jwt_claims: dict[str, Any] = field(default_factory=dict)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """Write a CA cert and a server cert+key (SAN localhost, 127.0.0.1); return their paths."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Nudge test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    return ca_path, cert_path, key_path


class ApnsPeer(ThreadedPeer):
    """Local APNs. After start: `endpoint`, `port`, `ca_file` (the CA to trust), `cert_file`
    (server cert), `key_file` (the .p8 signing key); always: `private_key_pem`, `key_id`,
    `team_id`, `topic`, `received` (every request), `delivered` (the 200s), `connections`."""

    def __init__(
        self,
        *,
        topic: str = "com.example.nudge",
        key_id: str = "PEERKEY001",
        team_id: str = "PEERTEAM01",
        slow_delay: float = 3.0,
        max_concurrent_streams: int | None = None,
    ) -> None:
        super().__init__()
        self.topic, self.key_id, self.team_id = topic, key_id, team_id
        self.slow_delay = slow_delay
        self.max_concurrent_streams = max_concurrent_streams
        signing_key = ec.generate_private_key(ec.SECP256R1())
        self.private_key_pem = _pem_key(signing_key).decode()
        self._public_key = signing_key.public_key()
        self.received: list[ApnsReceived] = []
        self.connections = 0
        self._open: set[_H2Server] = set()
        self._throttled: set[str] = set()
        self._hung: set[str] = set()
        self._dir: Path | None = None
        self._server: asyncio.Server | None = None
        self.ca_file = self.cert_file = self.key_file = Path()

    @property
    def endpoint(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def delivered(self) -> list[ApnsReceived]:
        return [r for r in self.received if r.status == 200]

    def settings(self, **overrides: Any) -> ApnsSettings:
        """`ApnsSettings` pointing at this peer (key file, CA, endpoint); override any field."""
        values: dict[str, Any] = dict(
            key_file=self.key_file,
            key_id=self.key_id,
            team_id=self.team_id,
            topic=self.topic,
            endpoint=self.endpoint,
            ca_file=self.ca_file,
        )
        values.update(overrides)
        return ApnsSettings.model_validate(values)

    async def _serve(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="apns-peer-"))
        self.ca_file, self.cert_file, key = make_tls_files(self._dir)
        self.key_file = self._dir / f"AuthKey_{self.key_id}.p8"
        self.key_file.write_text(self.private_key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, key)
        ctx.set_alpn_protocols(["h2"])  # aioapns offers no ALPN; h2 clients that do get h2
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _H2Server(self), "127.0.0.1", 0, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for proto in list(self._open):
            if proto.transport is not None:
                proto.transport.abort()
        await asyncio.sleep(0)  # let connection_lost callbacks run before the loop stops
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _check_jwt(self, auth: str) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
        """Return (error reason or None, JWT header, claims), as APNs judges a provider token."""
        if not auth.lower().startswith("bearer "):
            return "MissingProviderToken", {}, {}
        token = auth.split(" ", 1)[1]
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self._public_key, algorithms=["ES256"])
        except jwt.PyJWTError:
            return "InvalidProviderToken", {}, {}
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return "InvalidProviderToken", header, claims
        if abs(time.time() - int(claims.get("iat", 0))) > 3600:
            return "ExpiredProviderToken", header, claims
        return None, header, claims

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[ApnsReceived, str]:
        """Decide the reply to one request; returns the record and an action (reply/slow/goaway)."""
        path = headers.get(":path", "")
        token = path.removeprefix("/3/device/") if path.startswith("/3/device/") else ""
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        bad_jwt, jwt_header, claims = self._check_jwt(headers.get("authorization", ""))
        rec = ApnsReceived(token, headers, payload, 200, None, jwt_header, claims)
        action = "reply"
        if bad_jwt:
            rec.status, rec.reason = 403, bad_jwt
        elif headers.get(":method") != "POST" or not token:
            rec.status, rec.reason = 404, "BadPath"
        elif headers.get("apns-topic") != self.topic:
            rec.status, rec.reason = 400, "BadTopic"
        elif len(body) > MAX_PAYLOAD:
            rec.status, rec.reason = 413, "PayloadTooLarge"
        elif token.startswith("throttle") and token not in self._throttled:
            self._throttled.add(token)
            rec.status, rec.reason = 429, "TooManyRequests"
        elif token.startswith("slow"):
            action = "slow"
        elif token.startswith("hang") and token not in self._hung:
            self._hung.add(token)
            rec.status, rec.reason, action = 0, "held", "hang"
        elif token.startswith("goaway"):
            action = "goaway"
        else:
            for prefix, (status, reason) in _ERRORS.items():
                if token.startswith(prefix):
                    rec.status, rec.reason = status, reason
                    break
        self.received.append(rec)
        return rec, action


class _H2Server(asyncio.Protocol):
    """One HTTP/2 connection on the server side."""

    def __init__(self, peer: ApnsPeer) -> None:
        self.peer = peer
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer.connections += 1
        self.peer._open.add(self)
        self.conn.initiate_connection()
        if self.peer.max_concurrent_streams:
            limit = self.peer.max_concurrent_streams
            self.conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: limit})
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except H2Error:
            self.flush()
            assert self.transport is not None
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, RequestReceived):
                self.streams[ev.stream_id] = (dict(ev.headers), bytearray())  # type: ignore[arg-type]
            elif isinstance(ev, DataReceived):
                self.streams[ev.stream_id][1].extend(ev.data)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, StreamEnded) and ev.stream_id in self.streams:
                task = asyncio.get_running_loop().create_task(self.handle(ev.stream_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(ev, StreamReset):
                self.streams.pop(ev.stream_id, None)
            elif isinstance(ev, ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer._open.discard(self)
        for task in self.tasks:
            task.cancel()

    async def handle(self, stream_id: int) -> None:
        headers, body = self.streams[stream_id]
        rec, action = self.peer.answer(headers, bytes(body))
        if action == "goaway":
            self.conn.close_connection()
            self.flush()
            assert self.transport is not None
            self.transport.close()
            return
        if action == "slow":
            await asyncio.sleep(self.peer.slow_delay)
        if action == "hang":
            await asyncio.Event().wait()  # cancelled when the connection is lost
        if self.streams.pop(stream_id, None) is None:
            return  # the client reset the stream meanwhile
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        out = [(":status", str(rec.status)), ("apns-id", apns_id)]
        try:
            if rec.status == 200:
                self.conn.send_headers(stream_id, out, end_stream=True)
            else:
                reply: dict[str, Any] = {"reason": rec.reason}
                if rec.status == 410:
                    reply["timestamp"] = int(time.time() * 1000)
                self.conn.send_headers(stream_id, [*out, ("content-type", "application/json")])
                self.conn.send_data(stream_id, json.dumps(reply).encode(), end_stream=True)
        except H2Error:
            return  # stream or connection gone
        self.flush()
