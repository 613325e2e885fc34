"""The delivery activity: one call into `engine.delivery`, with retries left to Temporal."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.delivery import Deliverer, DeliveryRetry
from schemas.journeys import DeliverOutcome, DeliverRequest, SmsLanes, SmsLanesRequest

HEARTBEAT_EVERY = 2.0  # seconds; the workflow sets a heartbeat timeout of a few of these


class DeliveryActivities:
    """Activities that send. Idempotent: the request's key finds earlier attempts."""

    def __init__(self, deliverer: Deliverer, *, lanes_of: str | None = None) -> None:
        """`lanes_of`: the task queue whose SMS lanes sends take (default: the run's own;
        a transactional journey's runs on `<queue>.tx` take `<queue>`'s)."""
        self._deliverer = deliverer
        self._lanes_of = lanes_of

    @activity.defn(name="nudge.deliver")
    async def deliver(self, request: DeliverRequest) -> DeliverOutcome:
        """Gate and deliver one send. Transient and throttled provider answers raise a
        retryable error; throttled ones carry the provider's delay when it gave one."""
        beating = asyncio.create_task(_heartbeat())
        try:
            # A first attempt cannot find rows of its own: the gate runs at once.
            return await self._deliverer.deliver(
                request, first_attempt=activity.info().attempt == 1
            )
        except DeliveryRetry as retry:
            raise ApplicationError(
                f"provider answered {retry.code}; will retry",
                type="Throttled" if retry.delay is not None else "Retryable",
                next_retry_delay=timedelta(seconds=retry.delay) if retry.delay else None,
            ) from None
        finally:
            beating.cancel()

    @activity.defn(name="nudge.sms_lanes")
    async def sms_lanes(self, request: SmsLanesRequest) -> SmsLanes:
        """The SMS lanes of a user's number (a local activity, on the run's worker)."""
        queue = self._lanes_of or activity.info().task_queue
        return await self._deliverer.sms_lanes(request, task_queue=queue)


async def _heartbeat() -> None:
    """Heartbeat while a send runs, so a crashed worker's send is retried after the
    heartbeat timeout rather than the whole start-to-close timeout. The first beat comes
    `HEARTBEAT_EVERY` after the start (the timeout runs from the start): most sends are
    done by then and cost no heartbeat call at all."""
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        activity.heartbeat()
