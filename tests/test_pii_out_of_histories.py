"""No personal data reaches Temporal: the server only ever holds ciphertext and internal ids.

An abandoned-cart run (push reminder, then last-call SMS) goes through the whole product with
the payload codec on, for a user whose product id is an email address and who has a phone
number, an iOS device token and a first name. The run's history is then read RAW from the
server, with a client that has no codec, and searched for each of them and for the rendered
message texts, as text and inside every base64 field. The same history read through the
codec (and through the codec server the Web UI uses) does show the data: the check is real.

The run sleeps until the last call (10:00 in the user's zone) between its two messages; the
test moves that run's clock past it (server-side time skipping) once the run is asleep, so
nothing depends on how long the first part took.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from engine.config.nudge_toml import NudgeConfig
from engine.store.migrate import upgrade
from engine.store.session import make_engine
from engine.temporal.client import SEARCH_ATTRIBUTES
from engine.temporal.codec import EncryptionCodec, data_converter, generate_key
from engine.temporal.replay import export_history
from tests.kit import Stack
from tests.kit.plaintext import found_anywhere
from triggers.codec_server import create_codec_app

EMAIL = "dana.pii-check@example.com"
PHONE = "+12015550187"
TOKEN = "ios-token-5f1c0ffee9a7d2b4c6e8"
FIRST_NAME = "Danaë"
CODEC = EncryptionCodec({"pii-test": base64.b64decode(generate_key())})


async def _run_cart(stack: Stack) -> tuple[dict[str, Any], str]:
    """One abandoned cart to its end (push, then last-call SMS): (run row, internal id)."""
    profile = await stack.profile(
        EMAIL, timezone="UTC", phone=PHONE, email=EMAIL, attributes={"first_name": FIRST_NAME}
    )
    await stack.device(EMAIL, "ios", TOKEN)
    for channel in ("push", "sms"):
        await stack.consent(EMAIL, channel, "subscribed")
    # Event properties are personal too when a product puts an email in them.
    await stack.track(EMAIL, "Cart Updated", {"value": 80, "item_count": 2, "email": EMAIL})
    await stack.wait_step(EMAIL, "sleep_until:10:00")  # the push went; the SMS is due at 10:00
    await stack.skip(EMAIL, timedelta(days=1, hours=1))
    [run] = await stack.wait_closed(EMAIL)
    assert run["outcome"] == "reminded", run
    return run, str(profile["uid"])


async def test_histories_hold_no_personal_data(
    temporal_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nudge.db'}"
    engine = make_engine(url)
    await upgrade(engine)
    await engine.dispose()
    target = temporal_env.client.service_client.config.target_host
    namespace = temporal_env.client.namespace
    encrypted = await Client.connect(
        target, namespace=namespace, data_converter=data_converter(CODEC)
    )
    config = NudgeConfig.model_validate({"journeys": {"abandoned_cart": {"nudge_after": "1s"}}})
    async with Stack(
        database_url=url, client=encrypted, task_queue=task_queue, config=config
    ) as stack:
        run, uid = await _run_cart(stack)
        handle = encrypted.get_workflow_handle(run["workflow_id"], run_id=run["run_id"])
        await handle.result()
        sent = {m.address.channel.value: m.content for m in stack.console.sent}
    assert set(sent) == {"push", "sms"}
    sms_body, push_title = sent["sms"].sms, sent["push"].title
    assert sms_body and FIRST_NAME in sms_body and push_title and FIRST_NAME in push_title
    needles = {
        "email": EMAIL,
        "phone": PHONE,
        "national phone": PHONE[2:],
        "device token": TOKEN,
        "first name": FIRST_NAME,
        "sms body": sms_body,
        "push title": push_title,
    }

    # The history as the server holds it, read by a client that has no codec.
    plain = Client(
        temporal_env.client.service_client,
        namespace=namespace,
        data_converter=pydantic_data_converter,
    )
    raw = await export_history(plain, run["workflow_id"], run["run_id"])
    leaks = [name for name, needle in needles.items() if found_anywhere(raw, needle)]
    assert not leaks, f"personal data in the raw history: {leaks}"

    # Ids and search attributes are plain text: internal ids only.
    workflow_id = run["workflow_id"]
    assert uid.startswith("u_") and workflow_id == f"journey/abandoned_cart/{uid}"
    description = await plain.get_workflow_handle(workflow_id, run_id=run["run_id"]).describe()
    attributes = {
        key.name: description.typed_search_attributes.get(key) for key in SEARCH_ATTRIBUTES
    }
    assert attributes["NudgeJourney"] == "abandoned_cart"
    assert attributes["NudgeUserId"] == uid
    for name, value in attributes.items():
        assert value is None or not any(n in value for n in needles.values()), name

    # Not vacuous: through the codec the same history shows the entry event's email.
    decoded = await export_history(encrypted, workflow_id, run["run_id"], decode=True)
    assert found_anywhere(decoded, EMAIL)
    await _codec_server_decodes(raw)


async def _codec_server_decodes(raw_history: str) -> None:
    """The Web UI's path: POST the start event's encrypted input to the codec server."""
    started = json.loads(raw_history)["events"][0]["workflowExecutionStartedEventAttributes"]
    body = json.dumps({"payloads": started["input"]["payloads"]})
    app = create_codec_app(CODEC, token="ui-token", cors_origins=["http://localhost:8233"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        refused = await http.post("/decode", content=body)
        assert refused.status_code == 401
        answer = await http.post(
            "/decode",
            content=body,
            headers={"Authorization": "Bearer ui-token", "X-Namespace": "default"},
        )
    assert answer.status_code == 200, answer.text
    [payload] = json_format.Parse(answer.text, Payloads()).payloads
    assert payload.metadata["encoding"] == b"json/plain"
    entry = json.loads(payload.data)
    assert entry["event"]["properties"]["email"] == EMAIL
    assert entry["journey"] == "abandoned_cart"
