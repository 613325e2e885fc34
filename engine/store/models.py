"""SQLAlchemy 2 models. Schema changes go through Alembic (`engine/db/migrations`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.store.types import JSONType, UTCDateTime, enum_column
from schemas.broadcasts import BroadcastStatus
from schemas.common import (
    Channel,
    ConsentSource,
    ConsentState,
    KeyScope,
    MessageStatus,
    Platform,
    RunStatus,
)

# SQLite only auto-increments INTEGER PRIMARY KEY; Postgres gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class User(Base):
    """A person, under Nudge's internal id (`u_...`); `external_id` is the product's userId."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    anonymous_id: Mapped[str | None] = mapped_column(String(255), index=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Indexed: the due-trigger sweep reads profiles changed since its last look.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # GDPR erasure: the row stays (consent evidence points at it) but holds only a hash.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    erased_hash: Mapped[str | None] = mapped_column(String(128))
    # Merged into another user (an anonymous visitor who turned out to be known): the key
    # stays, so later calls under it reach that user.
    merged_into: Mapped[str | None] = mapped_column(String(40))


class WriteKey(Base):
    """An API key; only its SHA-256 is stored. `scope` says what it may do (`KeyScope`),
    `environment` which deployment it was made for (a label: "production", "staging")."""

    __tablename__ = "write_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[KeyScope] = mapped_column(enum_column(KeyScope), default=KeyScope.SOURCE)
    environment: Mapped[str] = mapped_column(String(40), default="default")
    prefix: Mapped[str | None] = mapped_column(String(16))
    """The key's first characters, shown by `nudge keys list` to tell keys apart."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """An admin action through the API or the CLI: who (the key), what, on what."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(120))
    """`key:<id>:<name>` for an API key, `cli` for the command line."""
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Device(Base):
    """A push address: an APNs/FCM token or a Web Push subscription."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    platform: Mapped[Platform] = mapped_column(enum_column(Platform))
    token: Mapped[str] = mapped_column(Text, unique=True)
    subscription: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    app_id: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deactivated_reason: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Consent(Base):
    """One entry of the append-only consent log; current state is the newest entry."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(64))
    state: Mapped[ConsentState] = mapped_column(enum_column(ConsentState))
    source: Mapped[ConsentSource] = mapped_column(enum_column(ConsentSource, length=32))
    evidence: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_consents_lookup", "user_id", "channel", "topic", "id"),)


class Event(Base):
    """An accepted event: the outbox the router drains. (user, `message_id`) deduplicates:
    a client retrying a call is ignored, another user's call with the same id is not."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(300))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # When it happened: the client's `timestamp`, corrected by `sentAt` for clock skew.
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    original_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    route_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set when routing gave up on the event for good (it is then marked routed).
    route_error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint("user_id", "message_id", name="uq_events_user_message"),
        # Segments ask "did the user do X (within N days)": one index range per user.
        Index("ix_events_user_name_time", "user_id", "name", "timestamp"),
        # The router's claims read only unrouted rows: partial indexes stay small.
        Index(
            "ix_events_unrouted_id",
            "id",
            postgresql_where=text("routed_at IS NULL"),
            sqlite_where=text("routed_at IS NULL"),
        ),
        Index(
            "ix_events_unrouted_user",
            "user_id",
            "id",
            postgresql_where=text("routed_at IS NULL"),
            sqlite_where=text("routed_at IS NULL"),
        ),
    )


class JourneyRun(Base):
    """One run of a journey for a user: the router's routing state (not visibility)."""

    __tablename__ = "journey_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    key: Mapped[str | None] = mapped_column(String(255))
    workflow_id: Mapped[str] = mapped_column(String(400), index=True)
    run_id: Mapped[str | None] = mapped_column(String(64))
    entry_event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus), index=True)
    outcome: Mapped[str | None] = mapped_column(String(100))
    step: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    conversion_message_id: Mapped[str | None] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(64))
    experiment: Mapped[str | None] = mapped_column(String(100))
    """The experiment `split` assigned `variant` in (recorded when it assigns it)."""

    __table_args__ = (
        UniqueConstraint("journey", "entry_event_id", name="uq_runs_entry"),
        Index("ix_runs_user_status", "user_id", "status"),
        Index("ix_runs_user_journey", "user_id", "journey", "id"),
        # Funnels and readouts select a journey's (or an experiment's) runs by entry time.
        Index("ix_runs_journey_started", "journey", "started_at"),
        Index("ix_runs_experiment_started", "experiment", "started_at"),
    )


class Message(Base):
    """One message to one address; the id is derived from the send's idempotency key."""

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(600), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    journey: Mapped[str | None] = mapped_column(String(100))
    workflow_id: Mapped[str | None] = mapped_column(String(400), index=True)
    step: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[Channel] = mapped_column(enum_column(Channel))
    template: Mapped[str | None] = mapped_column(String(200))
    device_id: Mapped[str | None] = mapped_column(String(40))
    transactional: Mapped[bool] = mapped_column(Boolean, default=False)
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    """A test send (`nudge send-test`): in no journey, counted by no cap and no funnel."""
    status: Mapped[MessageStatus] = mapped_column(enum_column(MessageStatus), index=True)
    reason: Mapped[str | None] = mapped_column(String(100))
    variant: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_id: Mapped[str | None] = mapped_column(String(255), index=True)
    encoding: Mapped[str | None] = mapped_column(String(16))
    parts: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_id: Mapped[str | None] = mapped_column(String(64))
    """The run's first execution id (`journey_runs.run_id`): how funnels find a run's messages."""
    deferrals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many times quiet hours or a cap held the send before this row was written."""
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """The first human click on one of its tracked links."""
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """The first open an app SDK reported."""

    __table_args__ = (
        Index("ix_messages_user_created", "user_id", "created_at"),
        Index("ix_messages_run_step", "run_id", "step"),
    )


class MessageAttempt(Base):
    """Every call to a provider for a message: proof of what was tried, and when."""

    __tablename__ = "message_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(32))
    """The provider of a route this attempt submits to, written before the submit: a worker
    that dies mid-call leaves the one provider a resend may go to."""
    provider_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(String(255))


class Link(Base):
    """A tracked link in a message (`GET /c/{code}`)."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Every human click, the first included (repeats are counted here, not as events)."""
    bot_clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Clicks by link previewers and crawlers (told apart by User-Agent)."""


class Experiment(Base):
    """An experiment as a journey's `split` declared it: its arms in order (the first is
    the control) and its holdout fraction. Written when a run is first assigned an arm."""

    __tablename__ = "experiments"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    journey: Mapped[str] = mapped_column(String(100))
    arms: Mapped[list[str]] = mapped_column(JSONType)
    holdout: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessagePart(Base):
    """One submitted SMS part: the SMSC's id for it, so receipts (per part) find the message."""

    __tablename__ = "message_parts"

    smsc_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    part: Mapped[int] = mapped_column(Integer)
    state: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))


class SmsReceipt(Base):
    """A delivery receipt as the SMSC sent it, stored before it is acknowledged. Applied to
    its message once the part is known (a receipt can beat its own `submit_sm_resp`)."""

    __tablename__ = "sms_receipts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    smsc_id: Mapped[str] = mapped_column(String(128), index=True)
    stat: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    final: Mapped[bool] = mapped_column(Boolean)
    error_code: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SmsInboundPart(Base):
    """One part of a concatenated inbound SMS (UDH or `sar_*` TLVs), held until every part
    of its message arrived (or the hold timed out). Kept a day after it was joined, so a
    part the SMSC redelivers is recognised."""

    __tablename__ = "sms_inbound_parts"
    __table_args__ = (UniqueConstraint("sender", "reference", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sender: Mapped[str] = mapped_column(String(32))
    destination: Mapped[str] = mapped_column(String(32))
    reference: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    data_coding: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEvent(Base):
    """Something webhooks report (a message sent, a run ended, a consent change), written in
    the same transaction as the fact itself, so none is lost; dispatched to each subscribed
    endpoint as a `WebhookDelivery`. `id` is the `webhook-id` receivers deduplicate on."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str | None] = mapped_column(String(40), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "ix_webhook_events_undispatched",
            "created_at",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
    )


class WebhookDelivery(Base):
    """One event to one endpoint: its state, attempts and the receiver's last answer."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("endpoint", "event_id", name="uq_webhook_delivery"),)


class UserKey(Base):
    """The salt of a user's payload key (see `engine.store.data_keys`); deleted at erasure."""

    __tablename__ = "user_keys"

    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DueTrigger(Base):
    """An entry Nudge owes a journey at `due_at`: an inactivity trigger (the user's last
    watched event plus the window) or a date trigger (a planned local time). The sweep
    (`engine/system/sweep.py`) turns due rows into `User Inactive` / `Date Reached` events;
    it reads only unfired rows through a partial index, so its cost follows what is due,
    not the number of users. `key` is "" for journeys that are not keyed."""

    __tablename__ = "due_triggers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    key: Mapped[str] = mapped_column(String(255), default="")
    kind: Mapped[str] = mapped_column(String(16))
    """`inactive` or `date`."""
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Inactivity: when the watched event last happened."""
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    """Properties the synthesized event carries (a date trigger's source event's)."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("journey", "user_id", "key", name="uq_due_triggers"),
        Index(
            "ix_due_triggers_unfired",
            "due_at",
            postgresql_where=text("fired_at IS NULL"),
            sqlite_where=text("fired_at IS NULL"),
        ),
    )


class UserLocation(Base):
    """A user's last known location (from a location event) and the geofences it is in:
    the state geofence crossings are computed against. Personal data: erased with the user."""

    __tablename__ = "user_locations"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When the location was taken (the event's timestamp)."""
    geofences: Mapped[list[str]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Broadcast(Base):
    """One broadcast: every member of a segment entered into a journey once, by the
    `nudge.broadcast` workflow (id `broadcast/{id}`), which records its progress here."""

    __tablename__ = "broadcasts"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    journey: Mapped[str] = mapped_column(String(100))
    segment: Mapped[str] = mapped_column(String(100))
    status: Mapped[BroadcastStatus] = mapped_column(enum_column(BroadcastStatus))
    local: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    local_at: Mapped[str | None] = mapped_column(String(32))
    """The wall-clock time of a local broadcast ("2026-12-24T09:00", or "09:00")."""
    rate: Mapped[float | None] = mapped_column(Float)
    schedule: Mapped[str | None] = mapped_column(String(100))
    total: Mapped[int | None] = mapped_column(Integer)
    entered: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
