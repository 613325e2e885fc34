"""Nudge's /metrics body and the Temporal SDK's Prometheus exporter."""

from __future__ import annotations

import gc
import socket

import httpx
from temporalio.runtime import Runtime

from engine.observability.metrics import (
    EVENTS_ACCEPTED,
    PROVIDER_LATENCY,
    REGISTRY,
    SENDS,
    metrics_response,
    temporal_runtime_with_prometheus,
)
from tests.kit import eventually


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_response_exposes_nudge_metrics() -> None:
    before = REGISTRY.get_sample_value("nudge_sends_total", {"channel": "sms", "outcome": "sent"})
    SENDS.labels(channel="sms", outcome="sent").inc()
    EVENTS_ACCEPTED.labels(type="track").inc()
    PROVIDER_LATENCY.labels(provider="smpp").observe(0.03)
    body, content_type = metrics_response()
    assert content_type.startswith("text/plain")
    text = body.decode()
    assert 'nudge_sends_total{channel="sms",outcome="sent"}' in text
    assert 'nudge_events_accepted_total{type="track"}' in text
    assert 'nudge_provider_latency_seconds_bucket{le="0.05",provider="smpp"}' in text
    assert "nudge_routing_lag_seconds_bucket" in text
    after = REGISTRY.get_sample_value("nudge_sends_total", {"channel": "sms", "outcome": "sent"})
    assert after == (before or 0) + 1


async def test_temporal_runtime_serves_sdk_metrics_on_its_own_port() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    runtime = temporal_runtime_with_prometheus(f"127.0.0.1:{port}")
    runtime.metric_meter.create_counter("nudge_probe", "probe").add(3)
    async with httpx.AsyncClient() as client:

        async def served() -> httpx.Response | None:
            try:
                return await client.get(url)
            except httpx.ConnectError:
                return None  # the exporter starts on a core thread

        response = await eventually(served)
        assert response.status_code == 200
        assert "nudge_probe" in response.text
        # Dropping the runtime stops its HTTP server.
        del runtime
        gc.collect()

        async def stopped() -> bool:
            try:
                await client.get(url)
            except httpx.ConnectError:
                return True
            return False

        await eventually(stopped)


def test_no_bind_means_default_runtime() -> None:
    assert temporal_runtime_with_prometheus(None) is Runtime.default()


def test_open_label_sets_are_bounded() -> None:
    from engine.observability.metrics import OTHER, BoundedLabel

    label = BoundedLabel(2)
    assert [label(v, scope="j") for v in ("a", "b", "c", "a")] == ["a", "b", OTHER, "a"]
    assert label("c", scope="k") == "c"  # each scope (journey) has its own set
    assert label(None, scope="k") == "none" and len(label("x" * 500, scope="z")) == 100


def test_sends_count_per_journey_and_step() -> None:
    from engine.observability.metrics import count_send

    labels = {"journey": "metrics_probe", "step": "hello", "outcome": "sent"}
    before = REGISTRY.get_sample_value("nudge_journey_sends_total", labels) or 0
    count_send("metrics_probe", "hello", "sent")
    assert REGISTRY.get_sample_value("nudge_journey_sends_total", labels) == before + 1
