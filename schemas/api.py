"""Bodies of the management API: what comes in (`*In`) and what goes out (`*Out`).

Every `*Out` model is read from an ORM row's attributes (`Model.model_validate(row)`) and is
the one serializer of its noun: the API, the CLI and the GDPR export all use it.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from schemas.common import (
    Channel,
    ConsentSource,
    ConsentState,
    MessageStatus,
    Platform,
    RunStatus,
)
from schemas.fields import (
    EMAIL_PATTERN,
    LOCALE_PATTERN,
    PHONE_PATTERN,
    CleanText,
    FreeForm,
    Zone,
    text,
)


class ProfileIn(BaseModel):
    """`PUT /v1/users/{id}`; omitted fields are left as they are."""

    model_config = ConfigDict(extra="forbid")

    timezone: Zone | None = None
    locale: str | None = Field(default=None, max_length=35, pattern=LOCALE_PATTERN)
    phone: str | None = Field(default=None, max_length=32, pattern=PHONE_PATTERN)
    """E.164 or a national format `phonenumbers` can read; stored as E.164."""
    email: str | None = Field(
        default=None, max_length=320, json_schema_extra={"pattern": EMAIL_PATTERN}
    )
    attributes: FreeForm = Field(default_factory=dict)


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(min_length=16)
    auth: str = Field(min_length=8)


class WebPushSubscription(BaseModel):
    endpoint: AnyHttpUrl
    keys: SubscriptionKeys


class DeviceIn(BaseModel):
    """`POST /v1/users/{id}/devices`: a token for ios/android, a subscription for web."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {
                    "properties": {"platform": {"const": "web"}},
                    "required": ["subscription"],
                },
                {
                    "properties": {
                        "platform": {"enum": ["ios", "android"]},
                        "token": {"type": "string"},
                    },
                    "required": ["token"],
                },
            ]
        },
    )

    platform: Platform
    token: str | None = Field(default=None, min_length=1, max_length=4096, pattern=r"\S")
    subscription: WebPushSubscription | None = None
    app_id: str | None = text(255, default=None)
    locale: str | None = Field(default=None, max_length=35, pattern=LOCALE_PATTERN)
    timezone: Zone | None = None

    @model_validator(mode="after")
    def _address(self) -> DeviceIn:
        if self.platform is Platform.WEB:
            if self.subscription is None:
                raise ValueError("web devices need a subscription (endpoint and keys)")
        elif not self.token or not self.token.strip():
            raise ValueError(f"{self.platform.value} devices need a non-empty token")
        return self


class ConsentIn(BaseModel):
    """`PUT /v1/users/{id}/consent/{channel}`."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(default="marketing", min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    state: Literal["subscribed", "unsubscribed", "pending"]
    source: Literal["api", "sms_keyword", "form", "import", "device"] = "api"
    evidence: CleanText | None = text(2000, default=None)
    actor: CleanText | None = text(255, default=None)


# -- responses ---------------------------------------------------------------------------


class _Out(BaseModel):
    # Fields with defaults are always in the body, so the documented schema requires them.
    model_config = ConfigDict(
        from_attributes=True, json_schema_serialization_defaults_required=True
    )


T = TypeVar("T")


class Page(_Out, Generic[T]):
    """A list envelope. `next` is the cursor of the following page, None on the last."""

    items: list[T]
    next: str | None = None


class HealthOut(_Out):
    """`GET /healthz`: the process is up (liveness; it checks nothing else)."""

    status: Literal["ok"] = "ok"


class CheckOut(_Out):
    """One dependency of `GET /readyz`."""

    ok: bool
    detail: str | None = None
    """Why not (never a secret): e.g. "timed out after 2 s"."""


class ReadyOut(_Out):
    """`GET /readyz`: whether the dependencies answer (200 ready, 503 not)."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, CheckOut]


class FieldError(_Out):
    """One rejected input: `field` is a path such as `batch[2].event`, or `body`."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`), the body of every error.

    `type` is stable (`urn:nudge:problem:<slug>`); `instance` is the request path. Fields
    that are None are left out of the body (`model_dump(exclude_none=True)`), so the schema
    does not require them.
    """

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    code: str | None = None
    """Segment's error fields beside the RFC 9457 ones, so Segment's and RudderStack's clients
    log the reason instead of failing on the body: `code` is the slug of `type`."""
    message: str | None = None


class _Profile(_Out):
    """What a user's row and its API view share."""

    timezone: str | None
    """IANA zone name, e.g. `Europe/Paris`."""
    locale: str | None
    phone: str | None
    """E.164."""
    email: str | None
    attributes: Annotated[dict[str, Any], BeforeValidator(lambda value: value or {})]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class _UserIds(_Out):
    # A `users` row calls the product's id `external_id` and Nudge's `id`; the API calls
    # them `id` and `uid`. The second choice of each alias reads a body back.
    id: str = Field(validation_alias=AliasChoices("external_id", "id"))
    """The product's user id."""
    uid: str = Field(validation_alias=AliasChoices("uid", "id"))
    """Nudge's internal id (`u_...`)."""


# pydantic puts the fields of the last base first: ids, then the profile.
class UserOut(_Profile, _UserIds):
    """A user's profile (`GET`/`PUT /v1/users/{id}`)."""


class DeviceOut(_Out):
    """A registered push address, without the address itself."""

    id: str
    platform: Platform
    app_id: str | None
    active: bool
    deactivated_reason: str | None
    deactivated_at: AwareDatetime | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ConsentEntryOut(_Out):
    """One entry of the append-only consent log."""

    channel: Channel
    topic: str
    state: ConsentState
    source: ConsentSource
    evidence: str | None
    actor: str | None
    created_at: AwareDatetime


class ConsentStatesOut(_Out):
    """`GET /v1/users/{id}/consent/{channel}`: the current state of every known topic."""

    channel: Channel
    topics: dict[str, ConsentState]


class RunOut(_Out):
    """One run of a journey for the user."""

    journey: str
    workflow_id: str
    run_id: str | None
    key: str | None
    status: RunStatus
    outcome: str | None
    step: str | None
    version: str | None
    variant: str | None
    experiment: str | None = None
    """The experiment `split` assigned `variant` in."""
    started_at: AwareDatetime
    ended_at: AwareDatetime | None
    converted_at: AwareDatetime | None
    conversion_message_id: str | None


class MessageOut(_Out):
    """A message as every surface shows it: no address, no body.

    A `messages` row knows only Nudge's id of its user (`uid`), so build one with
    `MessageOut.of(row, user_id=...)`, which adds the product's.
    """

    id: str
    user_id: str | None
    """The product's user id (None once the user is erased)."""
    journey: str | None
    step: str | None
    channel: Channel
    template: str | None
    device_id: str | None
    status: MessageStatus
    reason: str | None
    """Why it was suppressed or failed, e.g. `quiet_hours`."""
    provider: str | None
    provider_id: str | None
    encoding: str | None
    parts: int | None
    """SMS parts."""
    attempts: int
    transactional: bool
    test: bool = False
    """A test send (`nudge send-test`): in no journey, outside caps and funnels."""
    created_at: AwareDatetime
    sent_at: AwareDatetime | None
    delivered_at: AwareDatetime | None
    run_id: str | None = None
    """The run's first execution id (`journey_runs.run_id`)."""
    deferrals: int = 0
    """How often quiet hours or a cap held the send before it went."""
    clicked_at: AwareDatetime | None = None
    """The first human click on one of its tracked links."""
    opened_at: AwareDatetime | None = None
    """The first open an app reported."""
    uid: str = Field(validation_alias=AliasChoices("uid", "user_id"))
    """Nudge's internal id of the user."""

    @classmethod
    def of(cls, message: Any, *, user_id: str | None, **more: Any) -> Self:
        """From a `messages` row, the product's id of its user and any fields a subclass
        adds that the row does not hold (already validated, e.g. `attempt_log`)."""
        return cls.model_validate(message).model_copy(update={"user_id": user_id, **more})


class MessageAttemptOut(_Out):
    """One call to a provider for a message."""

    attempt: int
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    outcome: str | None
    provider_id: str | None
    error: str | None


MessageIdText = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:.-]+$")]
"""A message id as Nudge makes them (`m_` and hex)."""


class OpenedIn(BaseModel):
    """`POST /v1/messages/opened`: opens an app SDK reports in one call."""

    model_config = ConfigDict(extra="forbid")

    message_ids: list[MessageIdText] = Field(min_length=1, max_length=100)


class OpenedOut(_Out):
    """An open recorded: `first` if it was the message's first (it emitted `Message
    Opened`); a repeat is accepted and changes nothing."""

    message_id: str
    first: bool


class OpenedBatchOut(_Out):
    """The opens of a batch; `unknown` lists the ids Nudge has no message for."""

    items: list[OpenedOut]
    unknown: list[str] = []


class MessageDetailOut(MessageOut):
    """`GET /v1/messages/{id}`: the message and every attempt at it, in order."""

    attempt_log: list[MessageAttemptOut] = []


class ErasureOut(_Out):
    """`DELETE /v1/users/{id}`: the user is erased; `runs_open` runs could not be ended."""

    erased: bool = True
    runs_ended: int
    runs_open: int


# -- the GDPR export: every row held about a user, whole --------------------------------
# A `*RecordOut` is a row as the export has always shown it: every column but a few named
# in tests/triggers/test_api_schema.py, which holds each model to its table.


class _UserRowIds(_Out):
    id: str
    """Nudge's internal id."""
    external_id: str | None
    anonymous_id: str | None


class UserRecordOut(_Profile, _UserRowIds):
    """The `users` row, but for `erased_hash`."""

    erased_at: AwareDatetime | None
    merged_into: str | None


class DeviceRecordOut(DeviceOut):
    """A `devices` row, address included."""

    user_id: str
    token: str
    subscription: dict[str, Any] | None
    locale: str | None
    timezone: str | None


class ConsentRecordOut(ConsentEntryOut):
    """A `consents` row."""

    id: int


class EventRecordOut(_Out):
    """An `events` row."""

    id: int
    message_id: str
    type: str
    name: str
    properties: dict[str, Any]
    context: dict[str, Any]
    timestamp: AwareDatetime
    original_timestamp: AwareDatetime | None
    sent_at: AwareDatetime | None
    received_at: AwareDatetime
    routed_at: AwareDatetime | None
    route_attempts: int
    route_error: str | None


class RunRecordOut(RunOut):
    """A `journey_runs` row."""

    id: int
    entry_event_id: int


class MessageRecordOut(MessageOut):
    """A message as the API shows it, with its body."""

    body: dict[str, Any] | None
    """The rendered message as sent (None once erased)."""


class LocationRecordOut(_Out):
    """The user's last known location and the geofences it lies in."""

    latitude: float
    longitude: float
    at: AwareDatetime
    geofences: list[str]


class GdprExportOut(_Out):
    """`GET /v1/users/{id}/export`: everything held about the user."""

    user: UserRecordOut
    devices: list[DeviceRecordOut]
    consent_log: list[ConsentRecordOut]
    events: list[EventRecordOut]
    journey_runs: list[RunRecordOut]
    messages: list[MessageRecordOut]
    location: LocationRecordOut | None = None
