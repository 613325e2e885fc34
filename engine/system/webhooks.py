"""`WebhookDelivery`: one event to one endpoint, retried with back-off until it is taken or
the endpoint's `give_up_after` passes. The workflow id (`webhook/{endpoint}/{event id}`) makes
a dispatch idempotent; the payload stays in the database (only ids are in the history)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from schemas.webhooks import WebhookAttempt, WebhookDispatch


def retry(max_interval: timedelta) -> RetryPolicy:
    """Fast at first (a blip), then every `max_interval` (five minutes by default): a
    receiver down for an hour gets every event within minutes of coming back."""
    return RetryPolicy(
        initial_interval=min(timedelta(seconds=2), max_interval),
        backoff_coefficient=2.0,
        maximum_interval=max_interval,
    )


def workflow_id(endpoint: str, event_id: str) -> str:
    return f"webhook/{endpoint}/{event_id}"


@workflow.defn(name="nudge.webhook")
class WebhookDelivery:
    @workflow.run
    async def run(self, dispatch: WebhookDispatch) -> str:
        attempt = WebhookAttempt(endpoint=dispatch.endpoint, event_id=dispatch.event_id)
        try:
            await workflow.execute_activity(
                "nudge.webhook_deliver",
                attempt,
                start_to_close_timeout=dispatch.timeout + timedelta(seconds=5),
                schedule_to_close_timeout=dispatch.give_up_after,
                retry_policy=retry(dispatch.max_retry_interval),
            )
        except ActivityError:
            await workflow.execute_activity(
                "nudge.webhook_gave_up",
                attempt,
                start_to_close_timeout=timedelta(seconds=30),
            )
            return "failed"
        return "delivered"
