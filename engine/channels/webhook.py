"""Webhooks out: one signed POST (Standard Webhooks) per attempt.

Signed with the `standardwebhooks` reference library (HMAC-SHA256 over `id.timestamp.body`,
secret `whsec_<base64>`): `webhook-id` is the event id, stable across retries, so receivers
deduplicate; `webhook-timestamp` is the attempt's time. Never logs the body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from engine.clock import now

USER_AGENT = "nudge-webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What the receiver said: its HTTP status (None: no answer) and a short reason."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def signed_headers(secret: str, event_id: str, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` sent now."""
    stamp = now()
    signature = Webhook(secret).sign(msg_id=event_id, timestamp=stamp, data=body)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signature,
    }


async def post(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    event_id: str,
    payload: dict[str, Any],
    timeout: timedelta,
) -> Answer:
    """POST one event; never raises for the receiver's failures (they are the `Answer`)."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    headers = {
        **signed_headers(secret, event_id, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    try:
        response = await client.post(
            url, content=body.encode(), headers=headers, timeout=timeout.total_seconds()
        )
    except httpx.TimeoutException:
        return Answer(None, "timeout")
    except httpx.HTTPError as exc:
        return Answer(None, type(exc).__name__)
    return Answer(response.status_code, None if response.is_success else response.reason_phrase)
