"""`TwilioProvider`: SMS over a Twilio-compatible REST API (`kind = "twilio"` in nudge.toml).

Messages API shape: `POST {endpoint}/2010-04-01/Accounts/{AccountSid}/Messages.json`, a form
body (`To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`) and HTTP Basic auth
(the AccountSid or an API key SID, and its secret). The answer's `sid` is the message's
provider id, and the SMSC id of its one "part": status callbacks (`triggers/api/twilio.py`)
arrive per message and become the same receipts as SMPP's (`schemas.sms.Receipt`).

No request is retried here: Temporal retries the activity. An answer that never came after
the request was written is an `UnknownOutcomeError` (it may have been sent); a refused
connection is a plain `RetryableError` (it was not), which a route may fail over.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping

import httpx

from engine.channels.base import (
    ChannelProvider,
    InvalidRequestError,
    OutboundMessage,
    PermanentAddressError,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
    parse_retry_after,
)
from engine.channels.sms.encoding import TooLong, encode_sms
from engine.channels.sms.provider import SmsProviderResult
from engine.config.nudge_toml import TwilioProviderSettings
from schemas.sms import Receipt, ReceiptState

log = logging.getLogger("nudge.twilio")

API = "/2010-04-01"
ADDRESS_DEAD = {21211, 21614, 21612}  # invalid To, not a mobile number, unreachable by SMS
# Twilio MessageStatus → receipt state; `final` is False for the ones more statuses follow.
_STATES: dict[str, tuple[ReceiptState, bool]] = {
    "accepted": ("accepted", False),
    "scheduled": ("accepted", False),
    "queued": ("accepted", False),
    "sending": ("enroute", False),
    "sent": ("enroute", False),
    "delivered": ("delivered", True),
    "undelivered": ("undeliverable", True),
    "failed": ("rejected", True),
    "canceled": ("deleted", True),
    "read": ("delivered", True),
}


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature of a form POST: base64(HMAC-SHA1(auth token, URL + each key and
    value, keys sorted)). `url` is the full URL the provider requested."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(
        hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    ).decode()


def valid_signature(
    auth_token: str, url: str, params: Mapping[str, str], given: str | None
) -> bool:
    """Whether `given` is the signature of this request (constant-time comparison)."""
    if not given:
        return False
    return hmac.compare_digest(signature(auth_token, url, params).encode(), given.encode())


def receipt_of(params: Mapping[str, str], *, received_at: object) -> Receipt | None:
    """A status callback as a receipt (None for a status Nudge does not track)."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    if not sid or status not in _STATES:
        return None
    state, final = _STATES[status]
    return Receipt.model_validate(
        {
            "smsc_id": sid,
            "stat": status.upper(),
            "state": state,
            "final": final,
            "error_code": params.get("ErrorCode") or None,
            "received_at": received_at,
        }
    )


class TwilioProvider(ChannelProvider):
    """Sends `content.sms` through the Messages API; each send bounded by `timeout`."""

    paces_itself = False  # one request per message: the pipeline's token bucket paces it

    def __init__(self, settings: TwilioProviderSettings, auth_token: str) -> None:
        self.settings = settings
        self.name = settings.name
        self._token = auth_token
        self._client: httpx.AsyncClient | None = None
        base = settings.endpoint.rstrip("/")
        self.messages_url = f"{base}{API}/Accounts/{settings.account_sid}/Messages.json"

    async def start(self) -> None:
        timeout = self.settings.timeout.total_seconds()
        self._client = httpx.AsyncClient(
            auth=(self.settings.api_key_sid or self.settings.account_sid, self._token),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: OutboundMessage) -> SmsProviderResult:
        if not message.content.sms:
            raise InvalidRequestError("empty_sms", "the template rendered no SMS text")
        if not message.address.phone:
            raise InvalidRequestError("no_phone", "the address has no phone number")
        return await self.send_text(message.address.phone, message.content.sms)

    async def send_text(self, phone: str, text: str) -> SmsProviderResult:
        """One message; also used for keyword auto-replies."""
        try:
            sms = encode_sms(text, max_parts=self.settings.max_parts, reference=0)
        except TooLong as exc:
            raise InvalidRequestError("too_long", str(exc)) from exc
        form = {"To": phone, "Body": text}
        if self.settings.from_number:
            form["From"] = self.settings.from_number
        if self.settings.messaging_service_sid:
            form["MessagingServiceSid"] = self.settings.messaging_service_sid
        if self.settings.status_callback:
            form["StatusCallback"] = self.settings.status_callback
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            response = await self._client.post(self.messages_url, data=form)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError("connect", type(exc).__name__) from exc  # never reached it
        except httpx.TransportError as exc:  # written, then no (complete) answer
            raise UnknownOutcomeError("no_answer", type(exc).__name__) from exc
        return self._result(response, sms.encoding, sms.part_count)

    def _result(self, response: httpx.Response, encoding: str, parts: int) -> SmsProviderResult:
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = body.get("code") if isinstance(body, dict) else None
        name = f"{response.status_code}" + (f"/{code}" if code else "")
        if response.status_code in (200, 201) and isinstance(body, dict) and body.get("sid"):
            sid = str(body["sid"])
            log.info("twilio message accepted", extra={"smsc_id": sid})
            segments = str(body.get("num_segments") or "")
            return SmsProviderResult(
                provider=self.name,
                provider_id=sid,
                encoding=encoding,
                parts=int(segments) if segments.isdigit() else parts,
                part_ids=[sid],
            )
        if response.status_code == 429:
            retry = parse_retry_after(response.headers.get("Retry-After"))
            raise ThrottledError(name, "provider throttling", retry_after=retry)
        if response.status_code >= 500 or response.status_code in (401, 403, 404):
            # Not accepted: a provider fault or a setup fault (credentials, account).
            raise RetryableError(name, "provider refused the request")
        if code in ADDRESS_DEAD:
            raise PermanentAddressError(name, "the provider rejected the number")
        raise InvalidRequestError(name, "the provider refused the message")


__all__ = ["TwilioProvider", "receipt_of", "signature", "valid_signature"]
