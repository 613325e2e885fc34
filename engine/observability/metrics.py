"""Nudge's Prometheus metrics (one registry) and the Temporal SDK's metrics exporter.

Labels are closed sets (event type, reason, channel, outcome, provider): never a user id,
a phone number or a token, which would both leak personal data and explode cardinality.
Metric names carry the `nudge_` prefix; durations are seconds.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
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
