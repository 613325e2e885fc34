"""`nudge.toml`: quiet hours, caps, channels and journey overrides, validated by pydantic.

A bad file is refused at start-up with the line and the reason (`ConfigError`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
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
    concat_timeout: Duration = Field(
        default=timedelta(seconds=60),
        description="how long the parts of a long inbound SMS are held for the rest; then "
        "what arrived becomes the event, flagged `incomplete`",
    )
    help_reply: str = "Reply STOP to unsubscribe. Msg&data rates may apply."
    stop_reply: str = (
        "You are unsubscribed and will receive no more messages. Reply START to resubscribe."
    )
    start_reply: str = "You are subscribed again. Reply STOP to unsubscribe."
    keywords: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="extra keywords per language: {fr = {stop = ['ARRET'], start = [...]}}",
    )


class _SmsRoute(_Strict):
    """Where a provider sits in the SMS route order (`[[sms.providers]]`)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    countries: list[str] = Field(
        default_factory=list,
        description="E.164 prefixes this provider serves ('+1', '+336'); empty = every number",
    )
    priority: int = Field(default=100, description="lower goes first among equal prefixes")
    transactional_tps: float | None = Field(
        default=None, gt=0, description="the transactional lane's limit (default: `tps`)"
    )

    @field_validator("countries")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not re.fullmatch(r"\+[1-9]\d{0,6}", prefix):
                raise ValueError(f"country prefix {prefix!r} must look like '+1' or '+33'")
        return value

    def serves(self, phone: str) -> int | None:
        """How specific a match this provider is for `phone` (prefix length; 0 for a
        catch-all), or None when it does not serve it."""
        if not self.countries:
            return 0
        lengths = [len(p) for p in self.countries if phone.startswith(p)]
        return max(lengths) if lengths else None


class SmppProviderSettings(SmsChannel, _SmsRoute):
    """One SMPP bind in the route order: every `[channels.sms]` field, plus the route."""

    kind: Literal["smpp"]
    provider: Literal["smpp", "console"] = "smpp"
    name: str = Field(default="smpp", pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")


class TwilioProviderSettings(_SmsRoute):
    """A Twilio-compatible REST provider (Messages API, Basic auth, status callbacks).

    `auth_token_env` names the variable holding the auth token (or the API key secret with
    `api_key_sid`); status callbacks and inbound webhooks are verified with the auth token
    (`auth_token_env`, or `webhook_token_env` when sending with an API key). `status_callback`
    and `inbound_url` are Nudge's `/v1/sms/twilio/status` and `/v1/sms/twilio/inbound` as the
    provider reaches them (the signature covers that exact URL).
    """

    kind: Literal["twilio"]
    name: str = Field(default="twilio", pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    account_sid: str = Field(min_length=1)
    api_key_sid: str | None = None
    auth_token_env: str = "NUDGE_TWILIO_AUTH_TOKEN"
    webhook_token_env: str | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    inbound_url: str | None = None
    endpoint: str = "https://api.twilio.com"
    timeout: Duration = timedelta(seconds=10)
    tps: float = Field(default=10, gt=0)
    max_parts: int = Field(default=10, ge=1, le=255)


SmsProviderSettings = Annotated[
    SmppProviderSettings | TwilioProviderSettings, Field(discriminator="kind")
]


class SmsRouting(_Strict):
    """`[sms]`: several SMS providers and how a message picks one.

    A message goes to the providers serving its number, the most specific prefix first,
    then by `priority`; a provider whose bind is down, whose circuit is open (after
    `circuit_failures` failed sends in a row, for `circuit_reset`) or that throttles is
    skipped for the next. A send whose outcome is unknown is never tried on another one.
    """

    providers: list[SmsProviderSettings] = Field(default_factory=list)
    lanes: bool = Field(
        default=True,
        description="send each provider's SMS on task queues of its own, rate-limited by "
        "Temporal for the whole fleet (`tps`; transactional ones apart at `transactional_tps`); "
        "false: on the journeys' queue, paced per worker",
    )
    circuit_failures: int = Field(default=3, ge=1)
    circuit_reset: Duration = timedelta(seconds=30)

    @field_validator("providers")
    @classmethod
    def _unique(cls, value: list[Any]) -> list[Any]:
        names = [p.name for p in value]
        if len(names) != len(set(names)):
            raise ValueError("SMS provider names must be unique")
        return value


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


class Geofence(_Strict):
    """A place: a circle (`latitude`, `longitude`, `radius` in metres) or a polygon
    (`polygon`: at least three `[latitude, longitude]` corners, WGS84 degrees). A user's
    consecutive locations crossing it make `Geofence Entered` / `Geofence Exited` events."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,60}$")
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    radius: float | None = Field(default=None, gt=0, le=1_000_000, description="metres")
    polygon: list[tuple[float, float]] | None = None

    @field_validator("polygon")
    @classmethod
    def _corners(cls, value: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if value is None:
            return value
        if len(value) < 3:
            raise ValueError("a polygon needs at least three [latitude, longitude] corners")
        for lat, lon in value:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"[{lat}, {lon}] is not a [latitude, longitude] pair")
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> Geofence:
        circle = (self.latitude, self.longitude, self.radius)
        if self.polygon is None and None in circle:
            raise ValueError(
                f"geofence {self.name}: give latitude, longitude and radius, or polygon"
            )
        if self.polygon is not None and any(v is not None for v in circle):
            raise ValueError(f"geofence {self.name}: a circle or a polygon, not both")
        return self


class TriggersConfig(_Strict):
    """The due-trigger sweep (inactivity and date triggers, `engine/system/sweep.py`)."""

    sweep_every: Duration = timedelta(minutes=1)
    """The longest the sweep sleeps between two looks (it wakes earlier for a row due sooner)."""
    sweep_batch: int = Field(default=500, ge=1, le=10_000)
    """Due rows turned into events (and changed profiles read) per transaction."""
    profile_settle: Duration = timedelta(seconds=30)
    """Profile changes younger than this are read by a later round, so one written by a
    transaction that commits late is not passed over (date triggers on profile attributes)."""


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
    sms: SmsRouting = SmsRouting()
    journeys: dict[str, dict[str, Any]] = Field(default_factory=dict)
    webhooks: list[Webhook] = Field(default_factory=list)
    geofences: list[Geofence] = Field(default_factory=list)
    triggers: TriggersConfig = TriggersConfig()

    @field_validator("geofences")
    @classmethod
    def _unique_geofences(cls, value: list[Geofence]) -> list[Geofence]:
        names = [fence.name for fence in value]
        if len(names) != len(set(names)):
            raise ValueError("geofence names must be unique")
        return value

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

    def sms_providers(self) -> list[SmppProviderSettings | TwilioProviderSettings]:
        """The SMS route: `[[sms.providers]]`, or the one `[channels.sms]` SMPP bind."""
        if self.sms.providers:
            return list(self.sms.providers)
        if self.channels.sms.provider == "smpp":
            fields = self.channels.sms.model_dump(exclude={"provider"})
            return [SmppProviderSettings(kind="smpp", name="smpp", **fields)]
        return []

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


def _override_line(text: str, journey: str, key: str | None) -> int | None:
    """The line (1-based) of `[journeys.<journey>]`, or of `key` inside that table."""
    lines = text.splitlines()
    name = re.escape(journey)
    header = re.compile(rf"""^\s*\[\s*journeys\s*\.\s*(?:{name}|"{name}"|'{name}')\s*\]""")
    for n, line in enumerate(lines):
        if not header.match(line):
            continue
        if key is None:
            return n + 1
        wanted = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*=""")
        for m in range(n + 1, len(lines)):
            if lines[m].lstrip().startswith("["):
                break
            if wanted.match(lines[m]):
                return m + 1
        return n + 1
    return None


def check_journey_overrides(
    config: NudgeConfig,
    settings_of: Mapping[str, type[BaseModel]],
    *,
    path: Path | None,
) -> None:
    """Refuse `[journeys.<name>]` overrides that no run could use: a journey that does not
    exist, a key its settings do not have, a value they would not take. `settings_of`: each
    journey's settings model by name. Raises `ConfigError` naming the file, line and reason
    (otherwise a misspelled key fails every new run's workflow task, over and over)."""
    source = str(path) if path is not None else "nudge.toml"
    try:
        text = path.read_text(encoding="utf-8") if path is not None else ""
    except OSError:
        text = ""
    problems: list[str] = []

    def problem(loc: tuple[str, ...], reason: str) -> None:
        line = _override_line(text, loc[1], loc[2] if len(loc) > 2 else None)
        at = f"line {line}: " if line else ""
        problems.append(f"{source}: {at}{'.'.join(loc)}: {reason}")

    for name, overrides in config.journeys.items():
        model = settings_of.get(name)
        if model is None:
            known = ", ".join(sorted(settings_of)) or "none"
            problem(("journeys", name), f"no journey is named {name!r} (journeys: {known})")
            continue
        try:
            model.model_validate(overrides)
        except ValidationError as exc:
            fields = ", ".join(sorted(model.model_fields)) or "none"
            for err in exc.errors():
                loc = ("journeys", name, *(str(p) for p in err["loc"]))
                if err["type"] == "extra_forbidden":
                    problem(
                        loc, f"{name} has no setting {err['loc'][0]!r} (its settings: {fields})"
                    )
                else:
                    problem(loc, err["msg"])
    if problems:
        raise ConfigError("\n".join(problems))


def load_config(path: Path | None) -> NudgeConfig:
    """Load `nudge.toml` from `path`; no path means the embedded defaults."""
    if path is None:
        return NudgeConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, source=str(path))
