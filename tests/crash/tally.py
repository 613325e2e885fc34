"""What a run left behind, read from the product's own tables, Temporal's visibility and the
APNs peer's record of every request; and the wait until all of it has settled.

Settled means: every accepted event is stored and routed, every user whose `Cart Updated`
was accepted has a run row and none is open, no message is `pending`, and Temporal runs no
journey. The counts compare that with what the driver was told (2xx) and what the provider
saw; each request to the peer carries its message's `apns-id` (a UUIDv5 of the message id).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from engine.channels.push.apns import apns_id_for
from engine.store.models import Device, Event, JourneyRun, Message, User
from schemas.common import MessageStatus, RunStatus
from tests.crash.load import Driver
from tests.crash.stack import JOURNEY
from tests.peers.apns import ApnsPeer

SENT = (MessageStatus.SENT, MessageStatus.DELIVERED)


@dataclass
class Snapshot:
    """The rows of the run's users, as plain tuples (one read per table)."""

    users: dict[str, str]  # external id -> uid
    events: list[tuple[str, str, str, bool, str | None]]  # uid, messageId, name, routed, error
    runs: list[tuple[str, str, int, str, str]]  # uid, journey, entry event, workflow id, status
    messages: list[tuple[str, str, str | None, str, str | None]]  # id, uid, device, status, why
    devices: dict[str, tuple[str, str]]  # device id -> (uid, token)

    @classmethod
    async def read(cls, sessions: async_sessionmaker[AsyncSession]) -> Snapshot:
        async with sessions() as db:
            users = dict((await db.execute(select(User.external_id, User.id))).tuples().all())
            events = (
                await db.execute(
                    select(
                        Event.user_id,
                        Event.message_id,
                        Event.name,
                        Event.routed_at.is_not(None),
                        Event.route_error,
                    )
                )
            ).tuples()
            runs = (
                await db.execute(
                    select(
                        JourneyRun.user_id,
                        JourneyRun.journey,
                        JourneyRun.entry_event_id,
                        JourneyRun.workflow_id,
                        JourneyRun.status,
                    )
                )
            ).tuples()
            messages = (
                await db.execute(
                    select(Message.id, Message.user_id, Message.device_id, Message.status)
                    .add_columns(Message.reason)
                    .where(Message.journey == JOURNEY)
                )
            ).tuples()
            devices = (await db.execute(select(Device.id, Device.user_id, Device.token))).tuples()
        return cls(
            users={k: v for k, v in users.items() if k is not None},
            events=[(u, m, n, bool(r), e) for u, m, n, r, e in events],
            runs=[(u, j, e, w, str(s)) for u, j, e, w, s in runs],
            messages=[(i, u, d, str(s), r) for i, u, d, s, r in messages],
            devices={i: (u, t) for i, u, t in devices},
        )


def outstanding(snap: Snapshot, driver: Driver, running: int | None) -> dict[str, int]:
    """What keeps the run from being settled (empty when it is)."""
    stored = {(u, m): routed for u, m, _, routed, _ in snap.events}
    unrouted = sum(
        1
        for message_id, user in driver.accepted.items()
        if not stored.get((snap.users.get(user, ""), message_id), False)
    )
    entered = {u for u, j, *_ in snap.runs if j == JOURNEY}
    carts = {u for m, u in driver.accepted.items() if m.endswith("-cart")}
    left = {
        "events not yet routed": unrouted,
        "journeys not yet started": sum(1 for u in carts if snap.users.get(u) not in entered),
        "runs open": sum(1 for *_, s in snap.runs if s == RunStatus.OPEN),
        "messages pending": sum(1 for *_, s, _ in snap.messages if s == MessageStatus.PENDING),
        "Temporal runs running": 1 if running is None else running,
    }
    return {k: v for k, v in left.items() if v}


async def running_journeys(client: Client) -> int | None:
    """Journeys Temporal still runs (None when it cannot say right now)."""
    try:
        query = f"WorkflowType = '{JOURNEY}' AND ExecutionStatus = 'Running'"
        return (await client.count_workflows(query)).count
    except Exception:
        return None


async def settle(
    sessions: async_sessionmaker[AsyncSession], client: Client, driver: Driver, *, timeout: float
) -> dict[str, int]:
    """Wait until nothing is outstanding; returns what still was after `timeout` seconds
    (empty: settled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    left: dict[str, int] = {"nothing read yet": 1}
    while loop.time() < deadline:
        try:
            snap = await Snapshot.read(sessions)
        except Exception:  # the database restarting
            await asyncio.sleep(2)
            continue
        left = outstanding(snap, driver, await running_journeys(client))
        if not left:
            return {}
        await asyncio.sleep(2)
    return left


@dataclass
class Tally:
    """The matrix's columns for one target (see README.md for each one's meaning)."""

    values: dict[str, Any] = field(default_factory=dict)
    lost: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)


async def executions(client: Client) -> Counter[str]:
    """Temporal executions of the journey, per workflow id (every run, closed or not)."""
    seen: Counter[str] = Counter()
    async for wf in client.list_workflows(f"WorkflowType = '{JOURNEY}'"):
        seen[wf.id] += 1
    return seen


def count(snap: Snapshot, driver: Driver, apns: ApnsPeer, runs_per_id: Counter[str]) -> Tally:
    t = Tally()
    uid_of = snap.users
    user_of = {uid: ext for ext, uid in uid_of.items()}
    stored = Counter((u, m) for u, m, *_ in snap.events)
    by_key = {(u, m): (routed, err) for u, m, _, routed, err in snap.events}
    accepted = {(uid_of.get(user, ""), m) for m, user in driver.accepted.items()}
    carts = {uid_of.get(u, "") for m, u in driver.accepted.items() if m.endswith("-cart")}
    lost_events = sum(1 for k in accepted if k not in stored)
    unrouted = sum(1 for k in accepted if k in by_key and not by_key[k][0])
    set_aside = sum(1 for k in accepted if k in by_key and by_key[k][1])
    runs = [r for r in snap.runs if r[1] == JOURNEY]
    per_user = Counter(u for u, *_ in runs)
    per_entry = Counter((u, j, e) for u, j, e, *_ in runs)
    missing_runs = sum(1 for u in carts if u not in per_user)
    # Every user with a run expects one push per device registered (2xx) before the cart.
    expected = {
        uid_of[user]: len(tokens) for user, tokens in driver.devices.items() if user in uid_of
    }
    rows = Counter(u for _, u, *_ in snap.messages)
    status = Counter(s for *_, s, _ in snap.messages)
    beyond = sum(max(0, n - expected.get(u, 0)) for u, n in rows.items())
    missing_msgs = sum(max(0, expected.get(u, 0) - rows[u]) for u in per_user)
    not_sent = Counter(
        f"{s}:{why}" for *_, s, why in snap.messages if s not in (*SENT, MessageStatus.UNKNOWN)
    )
    by_apns_id = {apns_id_for(m[0]): m for m in snap.messages}
    received = list(apns.received)
    per_apns_id = Counter(r.headers.get("apns-id", "") for r in received)
    per_token = Counter(r.token for r in received)
    rows_per_token = Counter(snap.devices[d][1] for _, _, d, *_ in snap.messages if d)
    unknown = [m for m in snap.messages if m[3] == MessageStatus.UNKNOWN]
    unknown_reached = sum(1 for m in unknown if per_apns_id[apns_id_for(m[0])])
    sent_unseen = sum(
        1 for m in snap.messages if m[3] in SENT and not per_apns_id[apns_id_for(m[0])]
    )
    orphans = sum(1 for a in per_apns_id if a not in by_apns_id)
    dup_apns = sum(n - 1 for n in per_apns_id.values() if n > 1)
    dup_device = sum(max(0, n - rows_per_token[tok]) for tok, n in per_token.items())
    dup_exec = sum(n - 1 for n in runs_per_id.values() if n > 1)
    v = t.values
    v["users (journeys planned)"] = len(driver.plans)
    v["events accepted (2xx)"] = len(driver.accepted)
    v["events lost (accepted, not stored)"] = lost_events
    v["events never routed"] = unrouted
    v["events set aside (route_error)"] = set_aside
    v["duplicate event rows"] = sum(n - 1 for n in stored.values() if n > 1)
    v["journeys started (run rows)"] = len(runs)
    v["journeys missing"] = missing_runs
    v["duplicate journey_runs (user+journey+entry)"] = sum(
        n - 1 for n in per_entry.values() if n > 1
    )
    v["extra runs per user (re-entry is 7d)"] = sum(n - 1 for n in per_user.values() if n > 1)
    v["Temporal executions beyond one per id"] = dup_exec
    v["runs by outcome"] = _fmt(Counter(f"{s}" for *_, s in runs))
    v["messages expected / rows"] = (
        f"{sum(expected.get(u, 0) for u in per_user)} / {len(snap.messages)}"
    )
    v["messages per user beyond expected"] = beyond
    v["messages missing"] = missing_msgs
    v["messages by status"] = _fmt(status)
    v["messages not sent (failed/suppressed)"] = sum(not_sent.values())
    v["messages unknown (reached provider / not)"] = (
        f"{len(unknown)} ({unknown_reached} / {len(unknown) - unknown_reached})"
    )
    v["provider requests"] = len(received)
    v["duplicate provider sends (same apns-id)"] = dup_apns
    v["pushes to a device beyond its messages"] = dup_device
    v["provider requests without a message row"] = orphans
    v["sent rows the provider never saw"] = sent_unseen
    v["HTTP answers"] = _fmt(driver.answers)
    v["calls given up / refused"] = f"{len(driver.abandoned)} / {len(driver.rejected)}"
    t.lost = (
        lost_events
        + unrouted
        + set_aside
        + missing_runs
        + missing_msgs
        + sum(not_sent.values())
        + sent_unseen
        + len(driver.abandoned)
    )
    t.duplicates = (
        v["duplicate event rows"]
        + v["duplicate journey_runs (user+journey+entry)"]
        + v["extra runs per user (re-entry is 7d)"]
        + dup_exec
        + beyond
        + dup_apns
        + dup_device
        + orphans
    )
    if not_sent:
        t.notes.append(f"not sent: {_fmt(not_sent)}")
    for user, n in per_user.items():
        if n > 1:
            t.notes.append(f"user {user_of.get(user)} ({user}) has {n} runs")
    for apns_id, n in per_apns_id.items():
        if n > 1:
            m = by_apns_id.get(apns_id)
            t.notes.append(f"apns-id {apns_id} sent {n}x (message {m[0] if m else '?'})")
    t.notes.extend(f"refused: {r}" for r in driver.rejected[:5])
    return t


def _fmt(counts: Counter[str]) -> str:
    return " ".join(f"{k}={n}" for k, n in sorted(counts.items())) or "-"
