"""Nudge's Prometheus metrics (one registry) and the Temporal SDK's metrics exporter.

Labels are closed sets (event type, reason, channel, outcome, provider): never a user id,
a phone number or a token, which would both leak personal data and explode cardinality.
Metric names carry the `nudge_` prefix; durations are seconds.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

REGISTRY = CollectorRegistry(auto_describe=True)
"""Every Nudge metric lives here (not in prometheus_client's global registry)."""
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Routing happens in milliseconds normally and in minutes when Temporal is down.
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
# Provider calls: APNs/FCM tens of ms, SMPP submit_sm up to the bind's timeout.
_PROVIDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

EVENTS_ACCEPTED = Counter(
    "nudge_events_accepted",
    "Events accepted by the API and stored, by kind (track, identify, ...).",
    ["type"],
    registry=REGISTRY,
)
EVENTS_REJECTED = Counter(
    "nudge_events_rejected",
    "Events refused by the API, by reason (invalid, unauthorized, too_large, ...).",
    ["reason"],
    registry=REGISTRY,
)
ROUTING_LAG = Histogram(
    "nudge_routing_lag_seconds",
    "Seconds from an event being received by the API to its routing to journeys.",
    buckets=_LAG_BUCKETS,
    registry=REGISTRY,
)
EVENTS_ROUTED = Counter(
    "nudge_events_routed",
    "Events routed to Temporal (signal-with-start or signal).",
    registry=REGISTRY,
)
SENDS = Counter(
    "nudge_sends",
    "Send attempts by channel (sms, push, webpush, console) and outcome (sent, failed, ...).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
SUPPRESSIONS = Counter(
    "nudge_suppressions",
    "Sends suppressed by policy, by reason (consent, quiet_hours, cap, render_failed, ...).",
    ["reason"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "nudge_provider_latency_seconds",
    "Seconds one provider call took (apns, fcm, webpush, smpp), whatever its outcome.",
    ["provider"],
    buckets=_PROVIDER_BUCKETS,
    registry=REGISTRY,
)
DEVICE_DEACTIVATIONS = Counter(
    "nudge_device_deactivations",
    "Devices or numbers deactivated after a permanent provider error, by reason.",
    ["reason"],
    registry=REGISTRY,
)
ROUTER_CLAIMED = Gauge(
    "nudge_router_claimed",
    "Events the router claimed in its last pass (at the batch size, it is behind).",
    registry=REGISTRY,
)
ROUTER_BATCH = Gauge(
    "nudge_router_batch_size",
    "The most events a router claims in one pass.",
    registry=REGISTRY,
)
SMPP_BOUND = Gauge(
    "nudge_smpp_bound",
    "1 while the SMPP bind to the SMSC is up, by system_id.",
    ["system_id"],
    registry=REGISTRY,
)


class BoundedLabel:
    """Label values from an open set (journey names, step names, outcomes) kept to a closed
    one: the first `limit` distinct values (per `scope`) pass, later ones become `other`.
    Journeys name their steps and outcomes in code, so the limit is a guard, not a rule."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, value: str | None, *, scope: str = "") -> str:
        text = (value or "none")[:100]
        with self._lock:
            seen = self._seen.setdefault(scope, set())
            if text in seen:
                return text
            if len(seen) >= self._limit:
                return OTHER
            seen.add(text)
            return text


OTHER = "other"
journey_label = BoundedLabel(100)
"""A journey's name as a label (at most 100 journeys per process)."""
step_label = BoundedLabel(50)
"""A step's name as a label, per journey (at most 50 steps each)."""
outcome_label = BoundedLabel(30)
"""A run's outcome as a label, per journey (at most 30 outcomes each)."""

JOURNEY_ENTRIES = Counter(
    "nudge_journey_entries",
    "Runs started, by journey.",
    ["journey"],
    registry=REGISTRY,
)
JOURNEY_ENDS = Counter(
    "nudge_journey_ends",
    "Runs ended, by journey, status (completed, exited, failed) and outcome (the journey's "
    "own, or `exited:<event>`).",
    ["journey", "status", "outcome"],
    registry=REGISTRY,
)
JOURNEY_CONVERSIONS = Counter(
    "nudge_journey_conversions",
    "Goals reached within the goal window, by journey.",
    ["journey"],
    registry=REGISTRY,
)
JOURNEY_SENDS = Counter(
    "nudge_journey_sends",
    "Sends by journey, step and outcome (sent, suppressed, failed, invalid, unknown, ...).",
    ["journey", "step", "outcome"],
    registry=REGISTRY,
)
CLICKS = Counter(
    "nudge_link_clicks",
    "Clicks on tracked links, by journey and by who (human, bot).",
    ["journey", "who"],
    registry=REGISTRY,
)
OPENS = Counter(
    "nudge_message_opens",
    "First opens of messages reported by apps, by channel.",
    ["channel"],
    registry=REGISTRY,
)


def count_send(journey: str | None, step: str | None, outcome: str) -> None:
    """One send of a journey's step, with its outcome."""
    name = journey_label(journey)
    JOURNEY_SENDS.labels(name, step_label(step, scope=name), outcome).inc()


def count_end(journey: str, status: str, outcome: str) -> None:
    """A run ended."""
    name = journey_label(journey)
    JOURNEY_ENDS.labels(name, status, outcome_label(outcome, scope=name)).inc()


def metrics_response() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition of `REGISTRY`, for `/metrics`."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def temporal_runtime_with_prometheus(bind: str | None) -> Runtime:
    """A Temporal runtime that serves the SDK's own metrics at `http://{bind}/metrics`.

    `bind` is "host:port" (e.g. "0.0.0.0:9464"); None returns `Runtime.default()`, which
    exports nothing. Create it once per process, before `Client.connect(..., runtime=...)`:
    each runtime with a bind starts its own HTTP server, and a second one on the same
    address fails. Names and units are the SDK defaults (`temporal_*`, durations in ms).
    """
    if bind is None:
        return Runtime.default()
    return Runtime(
        telemetry=TelemetryConfig(
            # SDK default names and units, so Temporal's published SDK dashboards work.
            metrics=PrometheusConfig(bind_address=bind)
        )
    )
