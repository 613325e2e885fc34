"""`nudge.toml`: quiet hours, caps, channels and journey overrides, validated by pydantic.

A bad file is refused at start-up with the line and the reason (`ConfigError`).
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.durations import Duration

CapChannel = Literal["sms", "push", "webpush", "any"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


class QuietWindow(_Strict):
    """A window in the user's local time; `end` before `start` crosses midnight."""

    start: time
    end: time
    channel: CapChannel = "any"
    days: list[Weekday] | None = Field(
        default=None, description="local weekdays on which the window starts; None = every day"
    )


class QuietHours(_Strict):
    """Quiet hours, in each user's own zone.

    `action = "defer"` holds a message to the end of the window (plus a random spread of up to
    `release_jitter`); `"drop"` suppresses it with `quiet_hours_dropped`. Transactional
    messages bypass quiet hours unless `apply_to_transactional` is set.
    """

    start: time | None = None
    end: time | None = None
    action: Literal["defer", "drop"] = "defer"
    release_jitter: Duration = timedelta(0)
    apply_to_transactional: bool = False
    windows: list[QuietWindow] = Field(default_factory=list)

    def all_windows(self) -> list[QuietWindow]:
        base = [QuietWindow(start=self.start, end=self.end)] if self.start and self.end else []
        return base + list(self.windows)


class Cap(_Strict):
    """At most `limit` messages per `per` on `channel` (or `any`), optionally per journey.

    `window = "rolling"` looks back `per` from now; `"calendar"` counts from the start of the
    current local day (per < 7d) or ISO week (per >= 7d) in the user's zone.
    """

    channel: CapChannel = "any"
    limit: int = Field(ge=0)
    per: Duration
    window: Literal["rolling", "calendar"] = "rolling"
    journey: str | None = None
    on_capped: Literal["skip", "defer"] = "skip"
    max_deferrals: int = Field(default=3, ge=0)

    @field_validator("per")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("per must be a positive duration")
        return value


class SmsChannel(_Strict):
    provider: Literal["smpp", "console"] = "console"
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "nudge"
    system_type: str = ""
    password_env: str = "NUDGE_SMPP_PASSWORD"
    source_addr: str = "NUDGE"
    source_addr_ton: int | None = None
    source_addr_npi: int | None = None
    registered_delivery: bool = True
    window: int = Field(default=10, ge=1)
    tps: float = Field(default=50, gt=0)
    max_parts: int = Field(default=10, ge=1, le=255)
    enquire_link: Duration = timedelta(seconds=30)
    submit_timeout: Duration = timedelta(seconds=10)
    help_reply: str = "Reply STOP to unsubscribe. Msg&data rates may apply."
    stop_reply: str = (
        "You are unsubscribed and will receive no more messages. Reply START to resubscribe."
    )
    start_reply: str = "You are subscribed again. Reply STOP to unsubscribe."
    keywords: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="extra keywords per language: {fr = {stop = ['ARRET'], start = [...]}}",
    )


class ApnsSettings(_Strict):
    key_file: Path | None = None
    key_env: str | None = None
    key_id: str
    team_id: str
    topic: str
    endpoint: str = "https://api.push.apple.com"
    ca_file: Path | None = None
    timeout: Duration = timedelta(seconds=10)


class FcmSettings(_Strict):
    credentials_file: Path | None = None
    project_id: str | None = None
    endpoint: str = "https://fcm.googleapis.com"
    timeout: Duration = timedelta(seconds=10)


class WebPushSettings(_Strict):
    vapid_private_key_file: Path | None = None
    vapid_private_key_env: str | None = None
    vapid_subject: str = "mailto:ops@example.com"
    timeout: Duration = timedelta(seconds=10)


class PushChannel(_Strict):
    provider: Literal["native", "console"] = "console"
    apns: ApnsSettings | None = None
    fcm: FcmSettings | None = None
    webpush: WebPushSettings | None = None
    devices: Literal["all", "newest"] = "all"
    tps: float = Field(default=500, gt=0)


class Channels(_Strict):
    sms: SmsChannel = SmsChannel()
    push: PushChannel = PushChannel()


WebhookKind = Literal[
    "message.sent",
    "message.delivered",
    "message.failed",
    "message.suppressed",
    "message.clicked",
    "message.opened",
    "journey.entered",
    "journey.exited",
    "journey.completed",
    "journey.converted",
    "consent.changed",
]
WEBHOOK_KINDS: tuple[str, ...] = WebhookKind.__args__  # type: ignore[attr-defined]


class Webhook(_Strict):
    """An endpoint that receives Nudge's message, journey and consent events, signed as
    Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`: HMAC-SHA256
    over `id.timestamp.body` with the secret, `whsec_<base64>`), retried with back-off by
    Temporal until `give_up_after`, at least once per event id."""

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    url: str = Field(pattern=r"^https?://")
    events: list[WebhookKind] = Field(min_length=1)
    secret_env: str | None = None
    secret_file: Path | None = None
    timeout: Duration = timedelta(seconds=10)
    give_up_after: Duration = timedelta(days=3)
    """How long deliveries of one event are retried (a receiver down for a day loses nothing)."""
    max_retry_interval: Duration = timedelta(minutes=5)
    """The longest wait between two attempts: how soon after a receiver is back it is caught up."""


def _check_limit(value: str) -> str:
    from limits import parse  # the rate-limit library the API enforces these with

    try:
        parse(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate like '100/second' or '20/minute'") from None
    return value


RateLimit = Annotated[str, AfterValidator(_check_limit)]


class RateLimits(_Strict):
    """API rate limits (moving windows, per API process), as "N/second|minute|hour". A call
    over a limit gets 429 with `Retry-After`."""

    per_key: RateLimit = "2000/second"
    per_address: RateLimit = "1000/second"
    failed_auth: RateLimit = "20/minute"
    """Failed authentications per client address (a guessed key is a failure too)."""


class ApiConfig(_Strict):
    rate_limits: RateLimits = RateLimits()
    trust_forwarded_for: bool = False
    """Take the client address from `X-Forwarded-For` (only behind a proxy you run)."""


OnUnknown = Literal["leave", "resend"]


class UnknownOutcome(_Strict):
    """What to do with a message whose attempt started and never finished (a worker died
    mid-call, a provider timed out after the request was written): `leave` marks it
    `unknown` and never sends it again (a lost push beats a duplicate), `resend` sends it
    again (an OTP must arrive). Per kind of message, optionally per channel."""

    marketing: OnUnknown = "leave"
    transactional: OnUnknown = "resend"
    channels: dict[CapChannel, dict[Literal["marketing", "transactional"], OnUnknown]] = Field(
        default_factory=dict
    )

    def decide(self, *, channel: str, transactional: bool) -> OnUnknown:
        kind: Literal["marketing", "transactional"] = (
            "transactional" if transactional else "marketing"
        )
        override = self.channels.get(channel, {})  # type: ignore[call-overload]
        return override.get(kind, getattr(self, kind))  # type: ignore[no-any-return]


class DeliveryConfig(_Strict):
    unknown_outcome: UnknownOutcome = UnknownOutcome()


def _check_segment(expression: str) -> str:
    from engine.segments.language import SegmentError, parse

    try:
        parse(expression)
    except SegmentError as error:
        raise ValueError(f"column {error.column} of the expression: {error.reason}") from None
    return expression


def _check_segment_name(name: str) -> str:
    if not name or "/" in name:
        raise ValueError(f"segment names are non-empty and have no '/': {name!r}")
    return name


SegmentExpression = Annotated[str, AfterValidator(_check_segment)]
SegmentName = Annotated[str, AfterValidator(_check_segment_name)]


class ScheduleConfig(_Strict):
    """A recurring journey: enter every member of `audience` on each `cron` time.

    `cron` is a five-field expression (checked with croniter); `local` makes the time of day
    each user's own (needs a fixed minute and hour, e.g. "0 9 * * MON"); otherwise it is read
    in `timezone`. `overlap`: what a firing does while the previous one still runs;
    `catchup_window`: how late a missed firing (server down) may still run.
    """

    cron: str
    audience: str
    local: bool = False
    timezone: str = "UTC"
    overlap: Literal["skip", "buffer_one", "allow_all", "cancel_other"] = "skip"
    catchup_window: Duration = timedelta(hours=1)
    rate: float | None = Field(default=None, gt=0, description="entries per second")
    paused: bool = False

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        from engine.schedules import check_cron

        check_cron(value)
        return value

    @model_validator(mode="after")
    def _local_needs_fixed_time(self) -> ScheduleConfig:
        from engine.schedules import check_cron

        check_cron(self.cron, local=self.local)
        return self


class NudgeConfig(_Strict):
    """The whole of `nudge.toml`. Names may grow, never change."""

    delivery: DeliveryConfig = DeliveryConfig()

    api: ApiConfig = ApiConfig()

    timezone: str = "UTC"
    quiet_hours: QuietHours = QuietHours()
    caps: list[Cap] = Field(default_factory=list)
    channels: Channels = Channels()
    journeys: dict[str, dict[str, Any]] = Field(default_factory=dict)
    webhooks: list[Webhook] = Field(default_factory=list)
    segments: dict[SegmentName, SegmentExpression] = Field(
        default_factory=dict,
        description="named audiences: name = expression (see engine.segments.language)",
    )
    schedules: dict[str, ScheduleConfig] = Field(
        default_factory=dict, description="recurring journeys by journey name"
    )

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, value: list[Webhook]) -> list[Webhook]:
        names = [hook.name for hook in value]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        return value

    def webhooks_for(self, kind: str) -> list[Webhook]:
        """The endpoints subscribed to events of `kind`."""
        return [hook for hook in self.webhooks if kind in hook.events]

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))

    def journey_overrides(self, name: str) -> dict[str, Any]:
        return dict(self.journeys.get(name, {}))


class ConfigError(ValueError):
    """A `nudge.toml` that cannot be used; `str()` names the file, line and reason."""


def read_secret(where: str, *, file: Path | None, env: str | None, what: str) -> str:
    """A secret named in `nudge.toml` by file path or by environment variable (never inline).

    Raises `ConfigError` saying which setting to fix; the message never holds the secret.
    """
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {file}: {exc.strerror}") from exc
    if env:
        value = os.environ.get(env, "")
        if not value:
            raise ConfigError(f"{where}: environment variable {env} is unset or empty")
        return value
    raise ConfigError(f"{where}: set a file or an environment variable for {what}")


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line number (1-based) of the TOML key at pydantic error location `loc`."""
    lines = text.splitlines()
    pos, path = 0, list[str]()
    for i, part in enumerate(loc):
        if isinstance(part, int):
            header = re.compile(r"^\s*\[\[\s*" + re.escape(".".join(path)) + r"\s*\]\]")
            seen = -1
            for n in range(pos, len(lines)):
                if header.match(lines[n]):
                    seen += 1
                    if seen == part:
                        pos = n
                        break
            continue
        path.append(str(part))
        table = re.compile(r"^\s*\[+\s*" + re.escape(".".join(path)) + r"\s*\]+")
        key = re.compile(r"^\s*" + re.escape(str(part)) + r"\s*=")
        for n in range(pos, len(lines)):
            if table.match(lines[n]) or key.match(lines[n]):
                pos = n
                break
        else:
            return pos + 1 if i else None
    return pos + 1


def parse_config(text: str, *, source: str = "nudge.toml") -> NudgeConfig:
    """Parse and validate TOML text; raise `ConfigError` with line and reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    try:
        return NudgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            line = _line_of(text, tuple(err["loc"]))
            at = f"line {line}: " if line else ""
            problems.append(f"{source}: {at}{where}: {err['msg']}")
        raise ConfigError("\n".join(problems)) from exc


def load_config(path: Path | None) -> NudgeConfig:
    """Load `nudge.toml` from `path`; no path means the embedded defaults."""
    if path is None:
        return NudgeConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, source=str(path))
