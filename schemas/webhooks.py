"""Payloads of the webhook delivery workflow and its activities (ids only: the event's
body stays in the database)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel


class WebhookDispatch(BaseModel):
    """Deliver event `event_id` to endpoint `endpoint` (a `[[webhooks]]` name)."""

    endpoint: str
    event_id: str
    timeout: timedelta = timedelta(seconds=10)
    give_up_after: timedelta = timedelta(days=3)
    max_retry_interval: timedelta = timedelta(minutes=5)


class WebhookAttempt(BaseModel):
    endpoint: str
    event_id: str
