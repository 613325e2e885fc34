"""Webhook activities: one signed POST per attempt; Temporal retries until it is taken."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.channels import webhook
from engine.config.nudge_toml import NudgeConfig, read_secret
from engine.store import webhooks
from schemas.webhooks import WebhookAttempt


class WebhookActivities:
    """Sends webhook events to the endpoints of `nudge.toml` `[[webhooks]]`."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], config: NudgeConfig) -> None:
        self._sessions = sessions
        self._endpoints = {hook.name: hook for hook in config.webhooks}
        self._client = httpx.AsyncClient(follow_redirects=False)

    @activity.defn(name="nudge.webhook_deliver")
    async def deliver(self, attempt: WebhookAttempt) -> None:
        """POST the event once; any answer but 2xx (or none) is retried by Temporal."""
        hook = self._endpoints.get(attempt.endpoint)
        if hook is None:
            raise ApplicationError(
                f"no webhook endpoint {attempt.endpoint!r} in nudge.toml", non_retryable=True
            )
        secret = read_secret(
            f"webhooks.{hook.name}", file=hook.secret_file, env=hook.secret_env, what="the secret"
        )
        async with self._sessions() as session, session.begin():
            outgoing = await webhooks.begin_attempt(
                session, endpoint=attempt.endpoint, event_id=attempt.event_id
            )
        if outgoing is None or outgoing.status == webhooks.DELIVERED:
            return
        answer = await webhook.post(
            self._client,
            url=hook.url,
            secret=secret,
            event_id=outgoing.event_id,
            payload=outgoing.body,
            timeout=hook.timeout,
        )
        async with self._sessions() as session, session.begin():
            await webhooks.record_answer(
                session,
                endpoint=attempt.endpoint,
                event_id=attempt.event_id,
                status=webhooks.DELIVERED if answer.delivered else webhooks.PENDING,
                http_status=answer.status,
                error=answer.error,
            )
        if not answer.delivered:
            raise ApplicationError(
                f"receiver answered {answer.status or answer.error}", type="WebhookNotTaken"
            )

    @activity.defn(name="nudge.webhook_gave_up")
    async def gave_up(self, attempt: WebhookAttempt) -> None:
        """Retries ran out (`give_up_after`): the delivery is marked failed, visibly."""
        async with self._sessions() as session, session.begin():
            await webhooks.record_answer(
                session,
                endpoint=attempt.endpoint,
                event_id=attempt.event_id,
                status=webhooks.FAILED,
                http_status=None,
                error="gave up after the endpoint's give_up_after",
            )

    async def close(self) -> None:
        await self._client.aclose()
