"""The remote codec endpoint, driven over HTTP the way the Temporal Web UI calls it."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from engine.temporal.codec import EncryptionCodec, generate_key
from triggers.codec_server import PROBLEM_UNAUTHORIZED, create_codec_app

UI = "http://localhost:8080"
TOKEN = "test-codec-token"
PHONE = "+15555550123"


def _body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=list(payloads)))


def _parse(text: str) -> list[Payload]:
    return list(json_format.Parse(text, Payloads()).payloads)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    codec = EncryptionCodec({"k1": base64.b64decode(generate_key())})
    # Mounted the way the API mounts it, so prefix handling is exercised too.
    api = FastAPI()
    api.mount("/codec", create_codec_app(codec, token=TOKEN, cors_origins=[UI]))
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://nudge") as client:
        yield client


AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}


async def test_encode_then_decode_round_trip(http: httpx.AsyncClient) -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(PHONE).encode())
    encoded = await http.post("/codec/encode", content=_body(plain), headers=AUTH)
    assert encoded.status_code == 200, encoded.text
    assert encoded.headers["content-type"].startswith("application/json")
    # Proto-JSON base64s the bytes; make sure the plaintext is in neither form.
    assert PHONE not in encoded.text
    assert base64.b64encode(json.dumps(PHONE).encode()).decode() not in encoded.text
    [sealed] = _parse(encoded.text)
    assert sealed.metadata["encoding"] == b"binary/encrypted"

    decoded = await http.post("/codec/decode", content=encoded.text, headers=AUTH)
    assert decoded.status_code == 200, decoded.text
    assert _parse(decoded.text) == [plain]


async def test_cors_preflight_allows_the_ui(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/codec/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-namespace,authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("x-namespace", "authorization", "content-type"):
        assert header in allowed


async def test_cors_rejects_other_origins(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/codec/decode",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("auth", [None, "Bearer wrong", TOKEN])
async def test_401_problem_without_valid_token(http: httpx.AsyncClient, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = await http.post("/codec/decode", content=_body(), headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["type"] == PROBLEM_UNAUTHORIZED


async def test_unknown_key_is_a_problem_naming_the_key_id(http: httpx.AsyncClient) -> None:
    other = EncryptionCodec({"retired": base64.b64decode(generate_key())})
    [sealed] = await other.encode([Payload(data=b"x")])
    response = await http.post("/codec/decode", content=_body(sealed), headers=AUTH)
    assert response.status_code == 422
    assert "retired" in response.json()["detail"]


async def test_malformed_body_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/codec/decode", content=b"{not json", headers=AUTH)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_healthz_needs_no_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/codec/healthz")
    assert response.status_code == 200


async def test_no_token_configured_means_open() -> None:
    codec = EncryptionCodec({"k1": base64.b64decode(generate_key())})
    app = create_codec_app(codec, token=None, cors_origins=[])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://nudge"
    ) as client:
        response = await client.post("/encode", content=_body(Payload(data=b"1")))
    assert response.status_code == 200
