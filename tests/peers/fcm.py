"""An FCM v1-shaped HTTP server for tests (aiohttp, plain http on 127.0.0.1).

`POST /v1/projects/{project}/messages:send` answers `{"name": "projects/p/messages/N"}` or
a Google-shaped error carrying the FcmError detail, chosen by the message's token prefix:
  gone*      404 NOT_FOUND          UNREGISTERED
  mismatch*  403 PERMISSION_DENIED  SENDER_ID_MISMATCH
  throttle*  429 RESOURCE_EXHAUSTED QUOTA_EXCEEDED (Retry-After: 2) once per token, then OK
  invalid*   400 INVALID_ARGUMENT   INVALID_ARGUMENT
  down*      502 UNAVAILABLE        (firebase-admin does not retry 502)
  flaky*     503 UNAVAILABLE once per token, then OK (firebase-admin retries 503 itself)
  slow*      OK after `slow_delay` seconds
A missing or wrong bearer token gets 401 UNAUTHENTICATED; another project 404 NOT_FOUND.

Use:  async with FcmPeer() as peer:
          FcmProvider(peer.settings(timeout="1s"), credentials=peer.credentials())
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import google.auth.credentials
from aiohttp import web

from engine.config.nudge_toml import FcmSettings
from tests.peers._base import ThreadedPeer

_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_ERRORS = {  # token prefix -> (HTTP status, Google status, FCM errorCode)
    "gone": (404, "NOT_FOUND", "UNREGISTERED"),
    "mismatch": (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
    "throttle": (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
    "invalid": (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    "down": (502, "UNAVAILABLE", None),
    "flaky": (503, "UNAVAILABLE", None),
}
_ONCE = ("throttle", "flaky")  # these fail on the first request for a token only


class StaticTokenCredentials(google.auth.credentials.Credentials):
    """google-auth credentials with a fixed bearer token and a no-op refresh (tests only)."""

    def __init__(self, token: str = "test-token") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.token = token

    def refresh(self, request: Any) -> None:
        """Nothing to refresh: the token never expires."""


@dataclass
class FcmReceived:
    """One request the peer saw (headers lower-cased) and what it answered."""

    project: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    error_code: str | None = None

    @property
    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = self.body.get("message", {})
        return msg

    @property
    def token(self) -> str:
        return str(self.message.get("token") or self.message.get("fid") or "")


def google_error(status: int, name: str, message: str, fcm_code: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if fcm_code:
        error["details"] = [{"@type": _FCM_ERROR_TYPE, "errorCode": fcm_code}]
    return {"error": error}


class FcmPeer(ThreadedPeer):
    """Local FCM v1. After start: `endpoint`; always: `project_id`, `token`, `received`."""

    def __init__(
        self, *, project_id: str = "demo-nudge", token: str = "test-token", slow_delay: float = 3.0
    ) -> None:
        super().__init__()
        self.project_id, self.token, self.slow_delay = project_id, token, slow_delay
        self.received: list[FcmReceived] = []
        self._seen_once: set[str] = set()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def delivered(self) -> list[FcmReceived]:
        return [r for r in self.received if r.status == 200]

    def credentials(self) -> StaticTokenCredentials:
        """Credentials whose bearer token this peer accepts."""
        return StaticTokenCredentials(self.token)

    def settings(self, **overrides: Any) -> FcmSettings:
        """`FcmSettings` pointing at this peer; pass `credentials=peer.credentials()` too."""
        values: dict[str, Any] = {"project_id": self.project_id, "endpoint": self.endpoint}
        values.update(overrides)
        return FcmSettings.model_validate(values)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        # A deep backlog: the default 5 dropped bursts of concurrent sends (notes §2.1).
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _send(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        try:
            body = await request.json()
        except ValueError:
            body = {}
        rec = FcmReceived(project, {k.lower(): v for k, v in request.headers.items()}, body, 200)
        self.received.append(rec)
        status, name, code, message = self._decide(rec)
        rec.status, rec.error_code = status, code or (name if status != 200 else None)
        if status == 200:
            if rec.token.startswith("slow"):
                await asyncio.sleep(self.slow_delay)
            return web.json_response({"name": f"projects/{project}/messages/{next(self._ids)}"})
        headers = {"Retry-After": "2"} if status == 429 else None
        return web.json_response(
            google_error(status, name, message, code), status=status, headers=headers
        )

    def _decide(self, rec: FcmReceived) -> tuple[int, str, str | None, str]:
        if rec.headers.get("authorization") != f"Bearer {self.token}":
            return 401, "UNAUTHENTICATED", None, "Request had invalid authentication credentials."
        if rec.project != self.project_id:
            return 404, "NOT_FOUND", None, "Requested entity was not found."
        token = rec.token
        if not token:
            return 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Message has no target."
        for prefix, (status, name, code) in _ERRORS.items():
            if not token.startswith(prefix):
                continue
            if prefix in _ONCE:
                if token in self._seen_once:
                    break
                self._seen_once.add(token)
            return status, name, code, f"Simulated {name.lower()}."
        return 200, "OK", None, ""
