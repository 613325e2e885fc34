"""Seeing what runs: Prometheus counters, search attributes, open runs per step."""

from __future__ import annotations

import asyncio
import json
import re

from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from engine.config.settings import Settings
from engine.store.timeline import step_counts
from engine.temporal.client import temporal_binary
from tests.harness import Stack, eventually
from tests.journeys import TEST_JOURNEYS


def counter(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == want:
            return float(match.group(2))
    return 0.0


async def test_metrics_move_after_a_journey_runs(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=TEST_JOURNEYS,
    ) as s:
        before = (await s.http.get("/metrics")).text
        await s.device("mia")
        await s.track("mia", "Cart Touched", {"cart_id": "1"})
        await s.track("nia", "Cart Touched", {"cart_id": "1"})  # no device: suppressed
        await s.http.post("/v1/track", json={"userId": "x"})  # rejected
        await s.wait_closed("mia")
        await s.wait_closed("nia")
        after = (await s.http.get("/metrics")).text
    for name, labels, grew_by in (
        ("nudge_events_accepted_total", {"type": "track"}, 2),
        ("nudge_events_rejected_total", {"reason": "invalid"}, 1),
        ("nudge_events_routed_total", {}, 2),
        ("nudge_sends_total", {"channel": "push", "outcome": "sent"}, 1),
        ("nudge_suppressions_total", {"reason": "no_address"}, 1),
    ):
        assert counter(after, name, **labels) - counter(before, name, **labels) >= grew_by, name
    assert counter(after, "nudge_routing_lag_seconds_count") > 0
    assert counter(after, "nudge_provider_latency_seconds_count", provider="console") > 0


async def test_search_attributes_find_a_journeys_runs_and_their_step(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    config = NudgeConfig.model_validate({"journeys": {"t_keyed": {"hold": "30s"}}})
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        journeys=TEST_JOURNEYS,
        config=config,
    ) as s:
        user = await s.profile("sal")
        await s.track("sal", "Cart Touched", {"cart_id": "q"})
        run = (await eventually(lambda: s.runs("sal")))[0]
        query = f"NudgeJourney='t_keyed' AND NudgeUserId='{user['uid']}'"
        target = temporal_client.service_client.config.target_host

        async def listed() -> list[dict[str, object]] | None:
            process = await asyncio.create_subprocess_exec(
                temporal_binary(),
                "workflow",
                "list",
                "--address",
                target,
                "--query",
                query,
                "--output",
                "json",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, _ = await process.communicate()
            rows = (
                json.loads(out or b"[]")
                if out.strip().startswith(b"[")
                else [json.loads(line) for line in out.splitlines() if line.strip()]
            )
            return rows or None

        rows = await eventually(listed, timeout=120)
        assert rows[0]["execution"]["workflowId"] == run["workflow_id"]  # type: ignore[index]

        async def sleeping() -> dict[str, dict[str, int]] | None:
            settings = Settings(temporal_address=target)
            counts = await step_counts(settings)
            return counts if counts.get("t_keyed", {}).get("sleep") else None

        counts = await eventually(sleeping, timeout=120)
        assert counts["t_keyed"]["sleep"] >= 1
