"""Firebase Cloud Messaging (HTTP v1) with firebase-admin 7.7 `messaging.send_each_async`.

firebase-admin has no endpoint option; the per-app messaging service keeps the send URL in
the private attribute `_MessagingService._fcm_url` (notes §2.1), which this module sets for
its own app only. firebase-admin is pinned to 7.7.0 and `tests/engine/channels/test_fcm.py`
fails if that attribute disappears.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from typing import Any

import firebase_admin
import google.auth.credentials
import httpx
from firebase_admin import credentials as fb_credentials
from firebase_admin import exceptions as fb_exceptions
from firebase_admin import messaging

from engine.channels.base import (
    ChannelProvider,
    InvalidRequestError,
    OutboundMessage,
    PermanentAddressError,
    ProviderError,
    ProviderResult,
    RetryableError,
    ThrottledError,
    UnknownOutcomeError,
    parse_retry_after,
)
from engine.config.nudge_toml import ConfigError, FcmSettings

_PRIORITIES = ("high", "normal")
# firebase-admin error class -> FCM errorCode, for the ones that have their own class.
_FCM_CODES: dict[type[Exception], str] = {
    messaging.UnregisteredError: "UNREGISTERED",
    messaging.SenderIdMismatchError: "SENDER_ID_MISMATCH",
    messaging.QuotaExceededError: "QUOTA_EXCEEDED",
    messaging.ThirdPartyAuthError: "THIRD_PARTY_AUTH_ERROR",
}
_RETRYABLE = (
    fb_exceptions.UnavailableError,
    fb_exceptions.InternalError,
    fb_exceptions.DeadlineExceededError,
    fb_exceptions.UnknownError,
    fb_exceptions.AbortedError,
)


def fcm_send_url(endpoint: str, project_id: str) -> str:
    """The FCM v1 send URL under `endpoint` (scheme://host[:port], no trailing slash)."""
    return f"{endpoint.rstrip('/')}/v1/projects/{project_id}/messages:send"


def point_app_at(app: firebase_admin.App, endpoint: str) -> None:
    """Make `app`'s messaging service post to `endpoint` (private firebase-admin attribute)."""
    service = messaging._get_messaging_service(app)
    if not isinstance(getattr(service, "_fcm_url", None), str):
        raise RuntimeError(
            "firebase-admin no longer has _MessagingService._fcm_url; "
            "update engine/channels/fcm.py for this version"
        )
    service._fcm_url = fcm_send_url(endpoint, app.project_id)


def _retry_after(error: fb_exceptions.FirebaseError) -> float | None:
    """Seconds from the response's Retry-After header (seconds or HTTP date), if any."""
    response = error.http_response
    value = response.headers.get("Retry-After") if response is not None else None
    return parse_retry_after(value)


def map_error(error: Exception) -> ProviderError:
    """The Nudge error for a firebase-admin send error. Details carry no token or text."""
    if not isinstance(error, fb_exceptions.FirebaseError):
        return RetryableError("NetworkError", type(error).__name__)
    code = _FCM_CODES.get(type(error), str(error.code))
    status = error.http_response.status_code if error.http_response is not None else None
    detail = f"FCM answered {status}" if status else type(error).__name__
    if isinstance(error, messaging.UnregisteredError | messaging.SenderIdMismatchError):
        return PermanentAddressError(code, detail)
    if isinstance(error, fb_exceptions.ResourceExhaustedError):
        return ThrottledError(code, detail, retry_after=_retry_after(error))
    if isinstance(error, fb_exceptions.InvalidArgumentError):
        return InvalidRequestError(code, detail)
    if isinstance(error, _RETRYABLE):
        return RetryableError(code, detail)
    # Auth, permission, wrong project, third-party (APNs via FCM) auth: configuration
    # problems that a retry of this message will not fix.
    return InvalidRequestError(code, detail)


def build_message(message: OutboundMessage) -> messaging.Message:
    """The firebase-admin `Message` for an Android device; raises InvalidRequestError."""
    token = message.address.token
    if not token:
        raise InvalidRequestError("MissingDeviceToken", "the address has no FCM token")
    content, opts = message.content, message.content.push
    if opts.priority is not None and opts.priority not in _PRIORITIES:
        raise InvalidRequestError("BadPriority", opts.priority)
    data = dict(content.data)
    if content.url:
        data.setdefault("url", content.url)
    notification = None
    android_notification = None
    if content.title or content.body:
        notification = messaging.Notification(
            title=content.title, body=content.body, image=opts.image
        )
        # Android display options only make sense with a notification: on a data-only
        # message they would turn it into a visible one.
        android_notification = messaging.AndroidNotification(
            channel_id=opts.android_channel_id,
            sound=opts.sound,
            notification_count=opts.badge,
        )
    android = messaging.AndroidConfig(
        priority=opts.priority,
        ttl=opts.ttl,
        collapse_key=opts.collapse_id,
        notification=android_notification,
    )
    with warnings.catch_warnings():
        # 7.7 deprecates `token` for `fid`, but FCM registration tokens are still tokens.
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(
            token=token, data=data or None, notification=notification, android=android
        )


class FcmProvider(ChannelProvider):
    """Sends to FCM HTTP v1. Timeout per send: `settings.timeout` (seconds), which also
    bounds firebase-admin's own retries of 500/503.

    Credentials come from `credentials` (any google-auth credentials, e.g. for tests) or from
    `settings.credentials_file` (a service-account JSON). Each provider owns a uniquely named
    firebase app, created in `start()` (or on the first send) and deleted by `close()`.
    """

    name = "fcm"

    def __init__(
        self,
        settings: FcmSettings,
        *,
        credentials: google.auth.credentials.Credentials | None = None,
    ) -> None:
        self.settings = settings
        project_id = settings.project_id
        self._credential: Any
        if credentials is not None:
            self._credential = credentials
        elif settings.credentials_file is not None:
            try:
                cert = fb_credentials.Certificate(str(settings.credentials_file))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"fcm: cannot use credentials_file: {exc}") from exc
            self._credential = cert
            project_id = project_id or cert.project_id
        else:
            raise ConfigError("fcm: set credentials_file (a service-account JSON)")
        if not project_id:
            raise ConfigError("fcm: set project_id (none in the credentials)")
        self.project_id: str = project_id
        self._timeout = settings.timeout.total_seconds()
        self._app_name = f"nudge-fcm-{uuid.uuid4().hex}"
        self._app: firebase_admin.App | None = None

    def _init_app(self) -> firebase_admin.App:
        options = {"projectId": self.project_id, "httpTimeout": self._timeout}
        app = firebase_admin.initialize_app(self._credential, options, name=self._app_name)
        try:
            point_app_at(app, self.settings.endpoint)
        except BaseException:
            firebase_admin.delete_app(app)
            raise
        return app

    async def start(self) -> None:
        if self._app is None:
            self._app = self._init_app()

    async def send(self, message: OutboundMessage) -> ProviderResult:
        fcm_message = build_message(message)
        if self._app is None:
            self._app = self._init_app()
        try:
            batch = await asyncio.wait_for(
                messaging.send_each_async([fcm_message], app=self._app), timeout=self._timeout
            )
        except TimeoutError as exc:
            raise UnknownOutcomeError("Timeout", f"no answer within {self._timeout:g}s") from exc
        except ValueError as exc:  # the message failed firebase-admin's own validation
            raise InvalidRequestError("InvalidMessage", str(exc)) from exc
        except (fb_exceptions.FirebaseError, httpx.HTTPError, OSError) as exc:
            raise map_error(exc) from exc
        response = batch.responses[0]
        if response.success:
            return ProviderResult(provider=self.name, provider_id=response.message_id)
        raise map_error(response.exception) from response.exception

    async def close(self) -> None:
        """Close the HTTP client in this loop, then delete the app in a thread.

        `delete_app` runs `asyncio.run(aclose())`, which fails inside a running loop
        (notes §2.4); the client is already closed here, so that second close is a no-op.
        """
        app, self._app = self._app, None
        if app is None:
            return
        service = messaging._get_messaging_service(app)
        await service._async_client.aclose()
        await asyncio.to_thread(firebase_admin.delete_app, app)
