"""Closed sets shared by every layer."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """A delivery channel; `PUSH` means native apps (APNs, FCM)."""

    PUSH = "push"
    WEBPUSH = "webpush"
    SMS = "sms"


class Platform(StrEnum):
    IOS = "ios"
    ANDROID = "android"
    WEB = "web"


class MessageStatus(StrEnum):
    """The fate of one message row.

    `pending` is a reserved slot (counts against caps) whose delivery has not finished;
    `sent` means the provider accepted it; `delivered`/`undelivered` come from receipts.
    """

    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    SUPPRESSED = "suppressed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """An attempt started and never finished; left, not resent (`[delivery]` policy)."""


class SendStatus(StrEnum):
    """What `Journey.send` returns to journey code."""

    SENT = "sent"
    SUPPRESSED = "suppressed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """It may have been delivered: an attempt's outcome was never known, and it was left."""


class RunStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    EXITED = "exited"
    FAILED = "failed"
    TERMINATED = "terminated"


ALL_TOPICS = "all"
"""A consent entry for topic `all` speaks for every topic of its channel (SMS STOP/START)."""
MARKETING = "marketing"
TRANSACTIONAL = "transactional"
OPT_IN_REQUESTED = "SMS Opt-In Requested"
"""The event a `pending` SMS consent emits; the double opt-in journey starts on it."""


class ConsentState(StrEnum):
    UNKNOWN = "unknown"
    PENDING = "pending"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class ConsentSource(StrEnum):
    """Where a consent entry came from (evidence for TCPA/GDPR)."""

    API = "api"
    SMS_KEYWORD = "sms_keyword"
    FORM = "form"
    IMPORT = "import"
    DEVICE = "device"


class KeyScope(StrEnum):
    """What an API key may do.

    `source`: send data in (track/identify/... and registering devices): safe to build into
    an app, as Segment's write keys are. `read`: also read users, messages, runs, consent and
    stats. `admin`: everything, including profile and consent changes, export, erasure.
    """

    SOURCE = "source"
    READ = "read"
    ADMIN = "admin"

    def allows(self, needed: KeyScope) -> bool:
        """Whether a key of this scope may call a route that needs `needed`."""
        if self is KeyScope.ADMIN:
            return True
        return self is needed
