"""The delivery activity: one call into `engine.delivery`, with retries left to Temporal."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.delivery import Deliverer, DeliveryRetry
from schemas.journeys import DeliverOutcome, DeliverRequest


class DeliveryActivities:
    """Activities that send. Idempotent: the request's key finds earlier attempts."""

    def __init__(self, deliverer: Deliverer) -> None:
        self._deliverer = deliverer

    @activity.defn(name="nudge.deliver")
    async def deliver(self, request: DeliverRequest) -> DeliverOutcome:
        """Gate and deliver one send. Transient and throttled provider answers raise a
        retryable error; throttled ones carry the provider's delay when it gave one."""
        try:
            return await self._deliverer.deliver(request)
        except DeliveryRetry as retry:
            raise ApplicationError(
                f"provider answered {retry.code}; will retry",
                type="Throttled" if retry.delay is not None else "Retryable",
                next_retry_delay=timedelta(seconds=retry.delay) if retry.delay else None,
            ) from None
