"""The outbox: every event Nudge accepts is a row in `events` before anyone is told.

The router drains it into Temporal (`triggers/router.py`). Events come from the API
(`accept`) and from inside Nudge (SMS receipts and replies, consent changes): all of them
go through `add_event`, so every row has the same shape and deduplicates the same way.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Select, String, TextClause, Update, bindparam, select, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ids
from engine.clock import now
from engine.observability.metrics import EVENTS_ACCEPTED
from engine.store import driver
from engine.store.models import Event, User
from engine.store.rows import (
    insert_ignore,
    insert_many,
    locking,
    one_of,
    per_dialect,
    records,
    recordset,
    table_of,
)
from engine.store.session import dialect_name
from engine.store.users import (
    Merged,
    ProfileError,
    apply_profile,
    ensure_users,
    existing_users,
    merge,
)
from schemas.events import ROUTED_TYPES, AliasCall, Call, GroupCall, IdentifyCall, SegmentCall


async def add_event(
    session: AsyncSession,
    *,
    user_id: str,
    name: str,
    message_id: str,
    properties: dict[str, Any],
    source: str,
    context: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    received_at: datetime | None = None,
    kind: str = "track",
) -> bool:
    """Store one event for the router; False when `message_id` was stored before (the
    repeat is ignored). `source` says where it came from (`api`, `smpp`, `consent`, ...).
    The caller commits."""
    received = received_at or now()
    return await insert_ignore(
        session,
        Event,
        {
            "message_id": message_id,
            "user_id": user_id,
            "type": kind,
            "name": name,
            "properties": properties,
            "context": {"source": source, **(context or {})},
            "timestamp": timestamp or received,
            "received_at": received,
            "route_attempts": 0,
        },
        conflict=["user_id", "message_id"],
    )


@dataclass
class Accepted:
    """What `accept` did: stored message ids, repeats, and the merges it made (the caller
    terminates `merged.ended_runs` after committing)."""

    message_ids: list[str] = field(default_factory=list)
    duplicates: int = 0
    stored: int = 0
    merged: Merged = field(default_factory=Merged)


def corrected_timestamp(
    call: SegmentCall, *, sent_at: datetime | None, received: datetime
) -> datetime:
    """When the call happened, as Segment computes it: the client's `timestamp` (or
    `originalTimestamp`) moved by the client's clock skew, `received - sentAt`, when the
    client said when it sent the call; the receive time when it gave no time at all."""
    happened = call.timestamp or call.original_timestamp
    sent = call.sent_at or sent_at
    if happened is None:
        return received
    if sent is None:
        return happened
    return received - (sent - happened)


async def accept(
    session: AsyncSession, calls: Sequence[Call], *, sent_at: datetime | None = None
) -> Accepted:
    """Store every Segment call as an event row, in bulk. A repeated (user, `messageId`) is
    accepted and ignored. `identify` and `group` change the profile once per message id;
    `context.timezone`/`locale`/`ip` fill a profile that has none. A call carrying both a
    `userId` and an `anonymousId`, and every `alias`, merges the anonymous user into the
    known one (`engine.store.users.merge`).

    Round trips: on Postgres, a batch of known users' calls is one statement (their ids
    looked up and their events inserted together); new users add their creation and one
    insert. Elsewhere, or with merges, one query for the users (three when some are new)
    and one insert.

    `sent_at`: the batch's `sentAt`, for calls without their own. A bad trait raises
    `ProfileError`; the caller then rolls back, so nothing of the request is stored. The
    caller commits.
    """
    accepted = Accepted()
    if not calls:
        return accepted
    received = now()
    rows = [_event_row(call, sent_at=sent_at, received=received) for call in calls]
    accepted.message_ids = [row["message_id"] for row in rows]
    keys = [call.identity for call in calls]
    if dialect_name(session) == "postgresql" and not any(map(_previous_keys, calls)):
        users, inserted = await _insert_for_known(session, keys, rows)
        new = [i for i, key in enumerate(keys) if key not in users]
        if new:
            users.update(await ensure_users(session, {keys[i] for i in new}))
            inserted |= await _insert(
                session, [keys[i] for i in new], [rows[i] for i in new], users
            )
    else:
        users = await _users_merged(session, calls, into=accepted.merged)
        inserted = await _insert(session, keys, rows, users)
    accepted.stored = len(inserted)
    accepted.duplicates = len(rows) - len(inserted)
    fresh = [
        call
        for call, key, row in zip(calls, keys, rows, strict=True)
        if (users[key], row["message_id"]) in inserted
    ]
    await _apply_profiles(session, fresh, users)
    for kind, count in Counter(call.type for call in fresh).items():
        EVENTS_ACCEPTED.labels(kind).inc(count)
    return accepted


def _event_row(call: Call, *, sent_at: datetime | None, received: datetime) -> dict[str, Any]:
    """A call's event row, but for its user (`user_id`, set once the user is known)."""
    return {
        "message_id": call.message_id or ids.new_message_id(),
        "type": call.type,
        "name": call.event_name(),
        "properties": call.event_properties(),
        "context": dict(call.context),
        "timestamp": corrected_timestamp(call, sent_at=sent_at, received=received),
        "original_timestamp": call.timestamp or call.original_timestamp,
        "sent_at": call.sent_at or sent_at,
        "received_at": received,
        # Profile-only calls have nothing to route.
        "routed_at": None if call.type in ROUTED_TYPES else received,
        "route_attempts": 0,
    }


async def _users_merged(
    session: AsyncSession, calls: Sequence[Call], *, into: Merged
) -> dict[str, str]:
    """The calls' users by key, created as needed, with the merges their calls ask for made
    (`into` collects what they ended)."""
    keys = {call.identity for call in calls}
    users = await ensure_users(session, keys)
    earlier = await existing_users(session, [k for call in calls for k in _previous_keys(call)])
    for call in calls:
        for previous in _previous_keys(call):
            if previous in earlier:
                await merge(
                    session, source=earlier[previous], target=users[call.identity], into=into
                )
    if into.merged:
        users = await ensure_users(session, keys)  # merged keys now lead to the known user
    return users


async def _insert(
    session: AsyncSession, keys: list[str], rows: list[dict[str, Any]], users: dict[str, str]
) -> set[tuple[str, str]]:
    """Insert the rows, each for the user of its key; the (user, message id) pairs stored."""
    found = await insert_many(
        session,
        Event,
        [{**row, "user_id": users[key]} for key, row in zip(keys, rows, strict=True)],
        conflict=["user_id", "message_id"],
        returning=["user_id", "message_id"],
    )
    return {(user_id, message_id) for user_id, message_id in found}


async def _insert_for_known(
    session: AsyncSession, keys: list[str], rows: list[dict[str, Any]]
) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Postgres, one statement: the users of `keys` that exist (by key, a merged key
    leading to the user it joined), and the rows of those users inserted in the batch's
    order; returns both. The rows of keys without a user are left to the caller."""
    dialect = session.get_bind().dialect
    statement, columns = _known(dialect)
    params = {
        "keys": sorted(set(keys)),
        "rows": records(
            dialect, columns, [{**row, "key": key} for key, row in zip(keys, rows, strict=True)]
        ),
    }
    users: dict[str, str] = {}
    inserted: set[tuple[str, str]] = set()
    for kind, first, second in await session.execute(statement, params):
        if kind == "user":
            users[first] = second
        else:
            inserted.add((first, second))
    return users, inserted


_KNOWN_COLUMNS = (
    "message_id",
    "type",
    "name",
    "properties",
    "context",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "routed_at",
    "route_attempts",
)


@functools.cache
def _known(dialect: Dialect) -> tuple[TextClause, tuple[Column[Any], ...]]:
    """`_insert_for_known`'s statement (built once) and the columns of its rows: each
    row's user `key` and its event's columns. `ORDER BY` the batch's order: the events'
    ids, which the router follows, keep it."""
    events = table_of(Event)
    columns = (Column("key", String()), *(events.c[name] for name in _KNOWN_COLUMNS))
    listed = ", ".join(_KNOWN_COLUMNS)
    statement = text(
        f"""
        WITH known AS (
            SELECT external_id AS key, coalesce(merged_into, id) AS user_id
            FROM users WHERE external_id = ANY(CAST(:keys AS VARCHAR[]))
        ), stored AS (
            INSERT INTO events (user_id, {listed})
            SELECT known.user_id, {", ".join(f"r.{name}" for name in _KNOWN_COLUMNS)}
            FROM {recordset(dialect, columns)}
            JOIN known ON known.key = r.key
            ORDER BY r.n
            ON CONFLICT (user_id, message_id) DO NOTHING
            RETURNING user_id, message_id
        )
        SELECT 'user', key, user_id FROM known
        UNION ALL SELECT 'event', user_id, message_id FROM stored
        """
    )
    return statement, columns


def _previous_keys(call: Call) -> list[str]:
    """The keys a call says belong to its user too (to merge into it)."""
    if isinstance(call, AliasCall):
        return [
            key
            for key in (call.previous_id, f"anonymous:{call.previous_id}")
            if key != call.identity
        ]
    if call.user_id and call.anonymous_id:
        return [f"anonymous:{call.anonymous_id}"]
    return []


async def _apply_profiles(session: AsyncSession, calls: list[Call], users: dict[str, str]) -> None:
    """Traits of new identify/group calls, and context facts, onto the profiles (one query
    loads the users concerned)."""
    changes: list[tuple[str, dict[str, Any], bool]] = []
    for call in calls:
        uid = users[call.identity]
        if isinstance(call, IdentifyCall):
            changes.append((uid, dict(call.traits), False))
        elif isinstance(call, GroupCall):
            changes.append((uid, {"group_id": call.group_id, "group": dict(call.traits)}, False))
        facts = {
            name: call.context[name]
            for name in ("timezone", "locale", "ip")
            if isinstance(call.context.get(name), str) and call.context[name]
        }
        if facts:
            changes.append((uid, facts, True))
    if not changes:
        return
    wanted = sorted({uid for uid, _, _ in changes})
    found = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(wanted)))}
    for uid, fields, only_missing in changes:
        user = found.get(uid)
        if user is None:
            continue
        if only_missing:
            # A client's guess (e.g. a browser's zone) never breaks the call: keep what is valid.
            for name, value in fields.items():
                with contextlib.suppress(ProfileError):
                    apply_profile(user, {name: value}, only_missing=True)
        else:
            apply_profile(user, fields)


# -- the router's side -------------------------------------------------------------------


async def claim(session: AsyncSession, *, limit: int, skip: Iterable[int] = ()) -> list[Event]:
    """The oldest unrouted events, up to `limit`, locked for this transaction; each user's
    events come as a prefix of that user's unrouted events, so routing them now keeps the
    user's order whichever router holds the rest.

    Postgres: `FOR UPDATE SKIP LOCKED`, so several routers share the backlog; a user whose
    earlier event another router holds (or that waits in `skip`, e.g. to be retried later)
    is left out until that event is routed. Both queries use the partial index on unrouted
    events, so the cost follows the batch, not the backlog.
    """
    held = sorted(set(skip))
    oldest, oldest_but_held = _unrouted(session)
    query, values = (oldest_but_held, {"held": held}) if held else (oldest, {})
    claimed = await driver.objects(session, Event, _EVENT, query, {"limit": limit, **values})
    if not claimed:
        return []
    users = sorted({event.user_id for event in claimed})
    top = max(event.id for event in claimed)
    # Every unrouted event of these users up to the batch's last one, locked by us or not.
    others = await driver.rows(session, _unrouted_of(session), {"users": users, "top": top})
    mine = {event.id for event in claimed}
    blocked: set[str] = set()
    routable: set[int] = set()
    for user_id, event_id in others:
        if user_id in blocked:
            continue
        if event_id in mine and event_id not in held:
            routable.add(event_id)
        else:
            blocked.add(user_id)  # an earlier event is elsewhere: the rest waits for it
    return [event for event in claimed if event.id in routable]


_EVENT = driver.columns(Event)


@per_dialect
def _unrouted(dialect: str) -> tuple[Select[*tuple[Any, ...]], Select[*tuple[Any, ...]]]:
    """`claim`'s batch (built once): the oldest `limit` unrouted events, skipping those
    another transaction holds; and the same but for the ids `held`."""
    unrouted = select(*_EVENT).where(Event.routed_at.is_(None))
    held = unrouted.where(~one_of(dialect, Event.id, "held"))

    def batch(query: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
        limited = query.order_by(Event.id).limit(bindparam("limit"))
        return locking(dialect, limited, of=Event, skip_locked=True)

    return batch(unrouted), batch(held)


@per_dialect
def _unrouted_of(dialect: str) -> Select[str, int]:
    """`claim`'s second read (built once): the unrouted events of `users` up to `top`."""
    return (
        select(Event.user_id, Event.id)
        .where(
            Event.routed_at.is_(None),
            one_of(dialect, Event.user_id, "users"),
            Event.id <= bindparam("top"),
        )
        .order_by(Event.id)
    )


async def mark_routed(
    session: AsyncSession, *, ids: Iterable[int], at: datetime, error: str | None = None
) -> None:
    """Routing is done for these events (`error`: given up on for good, set aside)."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    routed, set_aside, _ = _route_updates(session)
    if error is None:
        await driver.execute(session, routed, {"ids": wanted, "at": at})
    else:
        await driver.execute(session, set_aside, {"ids": wanted, "at": at, "error": error[:200]})


async def note_attempt(session: AsyncSession, *, ids: Iterable[int]) -> None:
    """These events failed for a passing reason and stay unrouted."""
    wanted = sorted(set(ids))
    if wanted:
        await driver.execute(session, _route_updates(session)[2], {"ids": wanted})


@per_dialect
def _route_updates(dialect: str) -> tuple[Update, Update, Update]:
    """`mark_routed`'s updates, done and set aside (`error`), and `note_attempt`'s, of the
    events bound as `ids` (built once). On the table: an ORM-enabled update would first
    match the batch's loaded events."""
    events = table_of(Event)
    tried = update(events).where(one_of(dialect, events.c.id, "ids"))
    tried = tried.values(route_attempts=events.c.route_attempts + 1)
    routed = tried.values(routed_at=bindparam("at"))
    return routed, routed.values(route_error=bindparam("error")), tried
