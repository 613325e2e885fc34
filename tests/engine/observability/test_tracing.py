"""OpenTelemetry tracing: off by default, spans for journeys and activities when on."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from engine.config.settings import Settings
from engine.temporal.client import tracing_interceptors
from tests.journeys import TEST_JOURNEYS
from tests.kit import Stack


def test_tracing_is_off_unless_configured() -> None:
    assert tracing_interceptors(Settings()) == []
    assert len(tracing_interceptors(Settings(otel_tracing=True))) == 1


async def test_journey_and_activity_spans_when_on(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    config = temporal_client.config()
    config["interceptors"] = tracing_interceptors(Settings(otel_tracing=True))
    traced = Client(**config)
    async with Stack(
        database_url=postgres_url, client=traced, task_queue=task_queue, journeys=TEST_JOURNEYS
    ) as s:
        await s.device("oti")
        await s.track("oti", "Cart Touched", {"cart_id": "1"})
        await s.wait_closed("oti")
    names = {span.name for span in exporter.get_finished_spans()}
    assert "SignalWithStartWorkflow:t_keyed" in names
    assert "RunWorkflow:t_keyed" in names
    assert "RunActivity:nudge.deliver" in names
