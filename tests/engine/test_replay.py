"""Replay and export against a real Temporal dev server, with encrypted payloads."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from engine.temporal.client import DEV_SERVER_STARTUP, temporal_binary
from engine.temporal.codec import EncryptionCodec, data_converter, generate_key
from engine.temporal.replay import (
    HINT_CODEC,
    HINT_NONDETERMINISM,
    export_history,
    fetch_recent_histories,
    load_history,
    replay_histories,
)
from tests.engine._replay_workflows import (
    NAME,
    ProbeInput,
    ProbeV1,
    ProbeV2,
    Unrelated,
    check_number,
    echo,
)
from tests.plaintext import found_anywhere

PHONE = "+15555550123"
KEY = base64.b64decode(generate_key())
CONVERTER = data_converter(EncryptionCodec({"k1": KEY}))


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    server = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_startup_timeout=DEV_SERVER_STARTUP
    )
    async with server:
        yield server


@pytest.fixture(scope="module")
async def client(env: WorkflowEnvironment) -> Client:
    return Client(
        env.client.service_client, namespace=env.client.namespace, data_converter=CONVERTER
    )


@pytest.fixture(scope="module")
async def workflow_id(client: Client) -> str:
    """One finished run of ProbeV1 whose input, activity args/results and failure hold PHONE."""
    task_queue = f"replay-{uuid.uuid4()}"
    wf_id = f"journey/{NAME}/u_{uuid.uuid4().hex[:20]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[ProbeV1], activities=[check_number, echo]
    ):
        result = await client.execute_workflow(
            ProbeV1.run, ProbeInput(phone=PHONE), id=wf_id, task_queue=task_queue
        )
    assert result == PHONE
    return wf_id


async def test_export_holds_no_plaintext_and_replays(
    client: Client, workflow_id: str, tmp_path: Path
) -> None:
    raw = await export_history(client, workflow_id)
    assert list(json.loads(raw)) == ["events"]
    assert not found_anywhere(raw, PHONE)
    # The same check finds the number once payloads are decoded: it is not vacuous.
    readable = await export_history(client, workflow_id, decode=True)
    assert found_anywhere(readable, PHONE)

    path = tmp_path / "probe.json"
    path.write_text(raw)
    history = load_history(path)
    assert history.workflow_id == workflow_id
    [report] = await replay_histories([history], workflows=[ProbeV1], data_converter=CONVERTER)
    assert report.ok, report.error
    assert report.journey == NAME
    assert report.workflow_id == workflow_id


async def test_changed_workflow_fails_replay_at_the_diverging_event(
    client: Client, workflow_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "probe.json"
    path.write_text(await export_history(client, workflow_id))
    history = load_history(path)
    [report] = await replay_histories([history], workflows=[ProbeV2], data_converter=CONVERTER)
    assert not report.ok
    assert report.error is not None and "Nondeterminism" in report.error
    assert report.hint == HINT_NONDETERMINISM
    # V2 inserted a timer where V1 scheduled its first activity: that event is the culprit.
    first_activity = next(
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    assert report.event_id == first_activity


async def test_decoded_export_replays_too(client: Client, workflow_id: str, tmp_path: Path) -> None:
    path = tmp_path / "decoded.json"
    path.write_text(await export_history(client, workflow_id, decode=True))
    [report] = await replay_histories(
        [load_history(path)], workflows=[ProbeV1], data_converter=CONVERTER
    )
    assert report.ok, report.error


async def test_cli_export_loads_and_replays(
    env: WorkflowEnvironment, workflow_id: str, tmp_path: Path
) -> None:
    address = env.client.service_client.config.target_host
    shown = await asyncio.create_subprocess_exec(
        temporal_binary(), "workflow", "show", "--workflow-id", workflow_id,
        "--output", "json", "--address", address,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(shown.communicate(), timeout=120)
    assert shown.returncode == 0
    path = tmp_path / "cli.json"
    path.write_bytes(stdout)
    [report] = await replay_histories(
        [load_history(path)], workflows=[ProbeV1], data_converter=CONVERTER
    )
    assert report.ok, report.error
    assert report.workflow_id == workflow_id


async def test_wrong_keys_and_unknown_journey_are_reported(
    client: Client, workflow_id: str
) -> None:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    other_keys = data_converter(EncryptionCodec({"k2": base64.b64decode(generate_key())}))
    wrong_key, unknown = await asyncio.gather(
        replay_histories([history], workflows=[ProbeV1], data_converter=other_keys),
        replay_histories([history], workflows=[Unrelated], data_converter=CONVERTER),
    )
    assert not wrong_key[0].ok
    assert wrong_key[0].hint == HINT_CODEC
    assert "'k1'" in (wrong_key[0].error or "")
    assert not unknown[0].ok
    assert NAME in (unknown[0].hint or "")


async def test_fetch_recent_histories_newest_first(client: Client, workflow_id: str) -> None:
    task_queue = f"replay-{uuid.uuid4()}"
    newer = f"journey/{NAME}/u_{uuid.uuid4().hex[:20]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[ProbeV1], activities=[check_number, echo]
    ):
        await client.execute_workflow(
            ProbeV1.run, ProbeInput(phone=PHONE), id=newer, task_queue=task_queue
        )
    # Visibility lags the write by ~0.1 s on the dev server.
    for _ in range(50):
        histories = await fetch_recent_histories(client, journey=NAME, last=2)
        if len(histories) == 2 and histories[0].workflow_id == newer:
            break
        await asyncio.sleep(0.1)
    assert [h.workflow_id for h in histories] == [newer, workflow_id]
    assert [h.workflow_id for h in await fetch_recent_histories(client, journey=NAME, last=1)] == [
        newer
    ]
    reports = await replay_histories(histories, workflows=[ProbeV1], data_converter=CONVERTER)
    assert all(r.ok for r in reports)


async def test_fetch_recent_histories_rejects_query_injection(client: Client) -> None:
    with pytest.raises(ValueError):
        await fetch_recent_histories(client, journey="x' OR '1'='1", last=1)
