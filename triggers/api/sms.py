"""HTTP SMS providers' webhooks: Twilio-compatible status callbacks and inbound messages.

`POST /v1/sms/twilio/status` (the `StatusCallback` Nudge gives with each message) and
`POST /v1/sms/twilio/inbound` (the number's "a message comes in" webhook) take Twilio's
form bodies. Each must carry a valid `X-Twilio-Signature` (HMAC-SHA1 of the URL and the
sorted parameters, keyed with the account's auth token): an unsigned or wrongly signed
request is refused with 403, an account Nudge has no provider for with 401. Status callbacks
become the same receipts as SMPP's; inbound messages the same `SMS Received` events, with
the same keywords (STOP/START/HELP) and consent updates (`triggers.smpp.InboundHandler`).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response

from engine.channels.sms.twilio import TwilioProvider, receipt_of, valid_signature
from engine.clock import now
from engine.config.nudge_toml import ConfigError, TwilioProviderSettings, read_secret
from schemas.sms import InboundSms
from triggers.api.deps import state
from triggers.api.problems import Problem, problem_responses
from triggers.smpp import InboundHandler

router = APIRouter(
    prefix="/v1/sms",
    tags=["sms"],
    responses=problem_responses(400, 401, 403, 413, 503),
)

MAX_FIELDS = 100


async def _signed_form(
    request: Request, *, url_of: str
) -> tuple[TwilioProviderSettings, dict[str, str]]:
    """The form fields of a request signed by a configured Twilio account, or a problem."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise Problem(400, "invalid-body", "A form body is expected")
    try:
        pairs = parse_qsl(
            (await request.body()).decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "invalid-body", "The form body cannot be read") from None
    params = dict(pairs)
    settings = _account(request, params.get("AccountSid", ""))
    token = _secret(settings, settings.webhook_token_env or settings.auth_token_env)
    url: str = getattr(settings, url_of) or str(request.url)
    if not valid_signature(token, url, params, request.headers.get("X-Twilio-Signature")):
        raise Problem(403, "bad-signature", "The request's X-Twilio-Signature is not valid")
    return settings, params


def _secret(settings: TwilioProviderSettings, env: str) -> str:
    try:
        return read_secret(
            f"sms.providers.{settings.name}", file=None, env=env, what="the auth token"
        )
    except ConfigError:
        raise Problem(503, "unavailable", "The provider's auth token is not set") from None


def _account(request: Request, account_sid: str) -> TwilioProviderSettings:
    for settings in state(request).context.config.sms_providers():
        if isinstance(settings, TwilioProviderSettings) and settings.account_sid == account_sid:
            return settings
    raise Problem(401, "unknown-account", "No SMS provider is configured for this account")


@router.post("/twilio/status", status_code=204, response_class=Response)
async def twilio_status(request: Request) -> Response:
    """A delivery status callback: stored as a receipt of the message (its `MessageSid`)."""
    _, params = await _signed_form(request, url_of="status_callback")
    receipt = receipt_of(params, received_at=now())
    if receipt is not None:
        context = state(request).context
        handler = InboundHandler(sessions=context.sessions, config=context.config)
        await handler.on_receipt(receipt)
    return Response(status_code=204)


@router.post("/twilio/inbound", status_code=204, response_class=Response)
async def twilio_inbound(request: Request) -> Response:
    """An inbound SMS: an `SMS Received` event for the number's user, keywords applied
    (a STOP unsubscribes, HELP is answered through the same provider)."""
    settings, params = await _signed_form(request, url_of="inbound_url")
    sender, text = params.get("From", ""), params.get("Body", "")
    if not sender:
        raise Problem(400, "invalid-body", "The inbound message names no sender")
    message = InboundSms(
        sender=sender,
        destination=params.get("To", ""),
        text=text,
        data_coding=0,
        received_at=now(),
    )
    context = state(request).context
    # Per request: replies go out through the account the message came to.
    handler = InboundHandler(sessions=context.sessions, config=context.config)
    replier = TwilioProvider(settings, _secret(settings, settings.auth_token_env))
    handler.reply_with(replier)
    try:
        await handler.on_inbound(message, source="twilio")
    finally:
        await replier.close()
    return Response(status_code=204)
