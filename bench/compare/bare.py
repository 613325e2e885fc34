"""The bare baselines that need no Temporal: an ingest endpoint and a gate, on asyncpg.

They write the same tables as Nudge (a migrated schema, so the same columns, constraints
and indexes) and do as little as can still be called the job: no validation, no ORM, one
round trip per statement.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench._common import POSTGRES_URL

POOL_SIZE = 20  # opened at once; kept, as Nudge's engines keep theirs (engine/store/session.py)
POOL_MAX = 30  # Nudge's engines: pool_size 30, no overflow

# New users get an internal id; known ones are left alone (`ON CONFLICT DO NOTHING`).
UPSERT_USERS = """
INSERT INTO users (id, external_id, attributes, created_at, updated_at)
SELECT 'u_' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20), e, '{}', now(), now()
FROM (SELECT DISTINCT e FROM unnest($1::text[]) AS e) AS new_users
ON CONFLICT DO NOTHING
"""
INSERT_EVENTS = """
INSERT INTO events
    (message_id, user_id, type, name, properties, context, timestamp, received_at,
     route_attempts)
SELECT t.m, u.id, 'track', t.n, t.p::jsonb, '{}', now(), now(), 0
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(e, m, n, p)
JOIN users u ON u.external_id = t.e
ON CONFLICT DO NOTHING
"""
LOCK_USER = "SELECT id FROM users WHERE id = $1 FOR UPDATE"
INSERT_MESSAGE = """
INSERT INTO messages
    (id, idempotency_key, user_id, journey, workflow_id, step, channel, template,
     transactional, status, attempts, created_at, updated_at, sent_at)
VALUES ($1, $2, $3, 't_keyed', $4, 'send-1', 'push', 'keyed', false, 'sent', 1,
        $5, $5, $5)
"""


def dsn() -> str:
    """`POSTGRES_URL` as asyncpg spells it (no SQLAlchemy driver suffix)."""
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.asynccontextmanager
async def bare_pool(schema: str) -> AsyncIterator[Any]:
    """An asyncpg pool on `schema`, as large as Nudge's SQLAlchemy pool can grow."""
    pool = await asyncpg.create_pool(
        dsn(), min_size=POOL_SIZE, max_size=POOL_MAX, server_settings={"search_path": schema}
    )
    try:
        yield pool
    finally:
        await pool.close()


def bare_ingest_app(pool: Any) -> FastAPI:
    """`POST /v1/batch`: parse the JSON, upsert the users, insert the events, in one
    transaction; no validation, no auth. `GET /healthz` for the parent's start check."""
    app = FastAPI()
    ok = b'{"success":true}'

    @app.post("/v1/batch")
    async def batch(request: Request) -> Response:
        items: list[dict[str, Any]] = (await request.json())["batch"]
        users = [item["userId"] for item in items]
        columns = (
            users,
            [item["messageId"] for item in items],
            [item["event"] for item in items],
            [json.dumps(item.get("properties") or {}) for item in items],
        )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(UPSERT_USERS, users)
            await conn.execute(INSERT_EVENTS, *columns)
        return Response(ok, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(ok, media_type="application/json")

    return app


async def bare_decision(pool: Any, *, user_id: str, key: str) -> None:
    """One bare gate decision: lock the user's row, insert the message, commit."""
    at = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchrow(LOCK_USER, user_id)
        await conn.execute(INSERT_MESSAGE, f"m_{key}"[:64], key, user_id, f"bench/{key}", at)
