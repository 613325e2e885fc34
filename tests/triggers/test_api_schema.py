"""`/openapi.json` describes every body: each route's success body is a named model, its
errors are problem documents, and real answers read back through the declared models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import select
from temporalio.client import Client

import engine.analytics.models
import schemas.api
import schemas.broadcasts
import schemas.events
from engine import ids
from engine.config.nudge_toml import NudgeConfig
from engine.store.models import (
    Base,
    Consent,
    Device,
    Event,
    JourneyRun,
    Message,
    MessageAttempt,
    User,
)
from schemas.api import (
    ConsentRecordOut,
    DeviceRecordOut,
    EventRecordOut,
    FieldError,
    MessageRecordOut,
    Page,
    Problem,
    RunRecordOut,
    UserRecordOut,
)
from schemas.common import Channel, MessageStatus, RunStatus
from tests.harness import Stack

COMPONENTS = "#/components/schemas/"
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": COMPONENTS + "Problem"}}}


@pytest.fixture
async def api(postgres_url: str, temporal_client: Client, task_queue: str) -> AsyncIterator[Stack]:
    stack = Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        run_worker=False,
        config=NudgeConfig.model_validate({"segments": {"pro": 'plan == "pro"'}}),
    )
    async with stack:
        yield stack


async def openapi(api: Stack) -> dict[str, Any]:
    response = await api.http.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) for every operation in the document."""
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def models() -> dict[str, type[BaseModel]]:
    """Response models by the title of their schema (`UserOut`, `Page[DeviceOut]`)."""
    found = {
        cls.__name__: cls
        for module in (schemas.api, schemas.events, engine.analytics.models, schemas.broadcasts)
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, BaseModel)
    }
    for name, cls in list(found.items()):
        if name.endswith("Out") or name == "JourneySummary":
            found[f"Page[{name}]"] = Page[cls]  # type: ignore[valid-type]  # built at run time
    return found


async def test_every_success_body_is_a_named_model(api: Stack) -> None:
    document = await openapi(api)
    schemas = document["components"]["schemas"]
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        success = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert len(success) == 1, where
        [(code, response)] = success.items()
        if code == "204":
            assert "content" not in response, where
            continue
        schema = response["content"]["application/json"]["schema"]
        assert set(schema) == {"$ref"}, where  # a named model, never `{}` or an inline dict
        assert schema["$ref"].removeprefix(COMPONENTS) in schemas, where


async def test_errors_are_declared_as_problem_documents(api: Stack) -> None:
    document = await openapi(api)
    schemas = document["components"]["schemas"]
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        responses = operation["responses"]
        for code, response in responses.items():
            if code.startswith(("4", "5")) and where != "GET /readyz":  # its 503 is a report
                assert response["content"] == PROBLEM_CONTENT, (where, code)
        if path.startswith("/v1/"):
            assert "401" in responses, where
        if "requestBody" in operation:
            assert {"413", "422"} <= set(responses), where
        if any(p["in"] == "query" for p in operation.get("parameters", [])):
            assert "422" in responses, where
    # FastAPI's own 422 body is not what this API sends.
    assert "HTTPValidationError" not in schemas
    problem = schemas["Problem"]
    assert list(problem["properties"]) == list(Problem.model_fields)
    assert problem["required"] == ["type", "title", "status"]
    assert list(schemas["FieldError"]["properties"]) == list(FieldError.model_fields)


async def seed(api: Stack) -> dict[str, str]:
    """A user with a device, consent, an event, a journey run and a message with an attempt;
    returns the path parameters that name them."""
    await api.profile("ada", timezone="Europe/Paris", phone="+33612345678", attributes={"a": 1})
    device = await api.device("ada")
    await api.consent("ada", "sms", "subscribed")
    await api.track("ada", "Schema Probe", messageId="probe-1")
    stamp = datetime.now(UTC)
    async with api.context.sessions() as db:
        event = await db.scalar(select(Event).where(Event.message_id == "probe-1"))
        assert event is not None
        db.add(
            JourneyRun(
                journey="abandoned_cart",
                user_id=event.user_id,
                workflow_id=f"journey/abandoned_cart/{event.user_id}",
                entry_event_id=event.id,
                status=RunStatus.COMPLETED,
                outcome="reminded",
                started_at=stamp,
                ended_at=stamp,
                run_id="run-probe",
                experiment="probe_test",
                variant="a",
            )
        )
        message_id = ids.message_id("schema/probe")
        db.add(
            Message(
                id=message_id,
                idempotency_key="schema/probe",
                user_id=event.user_id,
                journey="abandoned_cart",
                step="cart_reminder",
                channel=Channel.PUSH,
                device_id=device["id"],
                status=MessageStatus.SENT,
                body={"title": "Your cart"},
                run_id="run-probe",
                attempts=1,
                created_at=stamp,
                updated_at=stamp,
                sent_at=stamp,
            )
        )
        await db.flush()
        db.add(
            MessageAttempt(
                message_id=message_id,
                attempt=1,
                started_at=stamp,
                finished_at=stamp + timedelta(milliseconds=5),
                outcome="sent",
            )
        )
        await db.commit()
    broadcast = await api.call("POST", "/v1/broadcasts", {"journey": "win_back", "segment": "pro"})
    return {
        "user_id": "ada",
        "device_id": device["id"],
        "message_id": message_id,
        "channel": "sms",
        "journey": "abandoned_cart",
        "experiment": "probe_test",
        "name": "pro",
        "broadcast_id": broadcast["id"],
    }


# (method, path template, query, body): one real request for every operation, deletes last.
CALLS: list[tuple[str, str, str, Any]] = [
    ("POST", "/v1/track", "", {"userId": "ada", "event": "Viewed"}),
    ("POST", "/v1/identify", "", {"userId": "ada", "traits": {"plan": "pro"}}),
    ("POST", "/v1/page", "", {"userId": "ada", "name": "Home"}),
    ("POST", "/v1/screen", "", {"userId": "ada", "name": "Cart"}),
    ("POST", "/v1/group", "", {"userId": "ada", "groupId": "acme", "traits": {"plan": "team"}}),
    ("POST", "/v1/alias", "", {"userId": "ada", "previousId": "visitor-1"}),
    ("POST", "/v1/batch", "", {"batch": [{"type": "track", "userId": "ada", "event": "B"}]}),
    ("POST", "/v1/import", "", {"batch": [{"type": "track", "userId": "ada", "event": "C"}]}),
    ("PUT", "/v1/users/{user_id}", "", {"locale": "fr-FR"}),
    ("GET", "/v1/users/{user_id}", "", None),
    ("POST", "/v1/users/{user_id}/devices", "", {"platform": "android", "token": "fcm-1"}),
    ("GET", "/v1/users/{user_id}/devices", "", None),
    ("GET", "/v1/users/{user_id}/journeys", "", None),
    ("PUT", "/v1/users/{user_id}/consent/{channel}", "", {"state": "unsubscribed"}),
    ("GET", "/v1/users/{user_id}/consent/log", "", None),
    ("GET", "/v1/users/{user_id}/consent/{channel}", "", None),
    ("GET", "/v1/users/{user_id}/consent/{channel}/log", "", None),
    ("GET", "/v1/messages", "?user_id=ada", None),
    ("GET", "/v1/messages/{message_id}", "", None),
    ("POST", "/v1/messages/{message_id}/opened", "", None),
    ("POST", "/v1/messages/opened", "", {"message_ids": ["m_unknown"]}),
    ("GET", "/v1/journeys", "", None),
    ("GET", "/v1/journeys/{journey}/stats", "?since=30d", None),
    ("GET", "/v1/experiments/{experiment}", "", None),
    ("GET", "/v1/users/{user_id}/export", "", None),
    ("GET", "/v1/segments", "", None),
    ("GET", "/v1/segments/{name}", "", None),
    ("POST", "/v1/broadcasts", "", {"journey": "win_back", "segment": "pro", "rate": 5}),
    ("GET", "/v1/broadcasts/{broadcast_id}", "", None),
    ("GET", "/healthz", "", None),
    ("GET", "/readyz", "", None),
    ("DELETE", "/v1/users/{user_id}/devices/{device_id}", "", None),
    ("DELETE", "/v1/users/{user_id}", "", None),
]


async def test_real_answers_read_back_through_their_declared_models(api: Stack) -> None:
    document = await openapi(api)
    schemas = document["components"]["schemas"]
    by_title = models()
    assert {(m, p) for m, p, _ in operations(document)} == {
        (m, p) for m, p, _, _ in CALLS
    } | SIGNED_ELSEWHERE
    names = await seed(api)
    for method, template, query, body in CALLS:
        where = f"{method} {template}"
        response = await api.http.request(method, template.format(**names) + query, json=body)
        operation = document["paths"][template][method.lower()]
        assert str(response.status_code) in operation["responses"], (where, response.text)
        if response.status_code == 204:
            assert response.content == b"", where
            continue
        ref = operation["responses"][str(response.status_code)]["content"]["application/json"]
        answer = response.json()
        # The document names the body's fields, in the order the body has them...
        component = schemas[ref["schema"]["$ref"].removeprefix(COMPONENTS)]
        assert list(component["properties"]) == list(answer), where
        # ...and the model it names reads the body back to the same JSON.
        read = by_title[component["title"]].model_validate(answer)
        assert read.model_dump(mode="json", by_alias=True) == answer, where


# Provider webhooks take signed form bodies from a configured provider: their answers are
# pinned in tests/engine/channels/sms/test_twilio.py (and their refusals in FAILING).
SIGNED_ELSEWHERE = {("POST", "/v1/sms/twilio/status"), ("POST", "/v1/sms/twilio/inbound")}


# (method, path template, its values, query, body, status) of requests that fail.
FAILING: list[tuple[str, str, dict[str, str], str, Any, int]] = [
    ("POST", "/v1/track", {}, "", {"userId": "ada", "event": "X"}, 401),  # sent without a key
    ("POST", "/v1/track", {}, "", {"userId": "ada", "event": "X", "blob": "x" * 40_000}, 413),
    ("POST", "/v1/track", {}, "", {"userId": "ada"}, 422),
    ("PUT", "/v1/users/{user_id}", {"user_id": "ada"}, "", {"phone": "12"}, 422),
    ("GET", "/v1/users/{user_id}", {"user_id": "nobody"}, "", None, 404),
    (
        "GET",
        "/v1/users/{user_id}/consent/{channel}",
        {"user_id": "ada", "channel": "fax"},
        "",
        None,
        404,
    ),
    ("GET", "/v1/messages", {}, "?cursor=%%%", None, 400),
    ("GET", "/v1/messages", {}, "?limit=0", None, 422),
    ("GET", "/v1/journeys/{journey}/stats", {"journey": "nope"}, "", None, 404),
    ("GET", "/v1/journeys/{journey}/stats", {"journey": "x"}, "?since=soon", None, 400),
    ("GET", "/v1/experiments/{experiment}", {"experiment": "nope"}, "", None, 404),
    ("POST", "/v1/messages/opened", {}, "", {"message_ids": []}, 422),
    ("POST", "/v1/sms/twilio/status", {}, "", {"MessageSid": "SM1"}, 400),  # not a form
    ("GET", "/v1/segments/{name}", {"name": "nobody"}, "", None, 404),
    ("GET", "/v1/broadcasts/{broadcast_id}", {"broadcast_id": "b_none"}, "", None, 404),
    ("POST", "/v1/broadcasts", {}, "", {"journey": "win_back", "segment": "nobody"}, 400),
    ("POST", "/v1/broadcasts", {}, "", {"journey": "win_back", "segment": "pro", "rate": 0}, 422),
]


async def test_problem_answers_are_the_declared_problem_model(api: Stack) -> None:
    document = await openapi(api)
    await api.profile("ada")
    for method, template, values, query, body, status in FAILING:
        where = f"{method} {template}{query} -> {status}"
        response = await api.http.request(
            method,
            template.format(**values) + query,
            json=body,
            auth=None if status == 401 else httpx.USE_CLIENT_DEFAULT,
        )
        assert response.status_code == status, (where, response.text)
        assert response.headers["content-type"] == "application/problem+json", where
        declared = document["paths"][template][method.lower()]["responses"]
        assert declared[str(status)]["content"] == PROBLEM_CONTENT, where
        answer = response.json()
        read = Problem.model_validate(answer)
        assert read.model_dump(mode="json", exclude_none=True) == answer, where


@pytest.mark.parametrize(
    ("model", "table", "left_out", "added"),
    [
        (UserRecordOut, User, {"erased_hash"}, set()),
        (DeviceRecordOut, Device, set(), set()),
        (ConsentRecordOut, Consent, {"user_id"}, set()),
        (EventRecordOut, Event, {"user_id"}, set()),
        (RunRecordOut, JourneyRun, {"user_id"}, set()),
        # A message as the API shows it (with `uid`), and its body, as the export has it.
        (
            MessageRecordOut,
            Message,
            {"idempotency_key", "workflow_id", "variant", "error_code", "updated_at"},
            {"uid"},
        ),
    ],
)
def test_the_export_holds_every_column(
    model: type[BaseModel], table: type[Base], left_out: set[str], added: set[str]
) -> None:
    """A column added to a table must be added to the GDPR export's model of its rows."""
    columns = {column.key for column in table.__table__.columns}
    assert set(model.model_fields) == columns - left_out | added
