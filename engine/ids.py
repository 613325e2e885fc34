"""Every id Nudge makes: workflow ids, user/device ids, message ids, idempotency keys.

Pure functions, so identity has one home. Nothing here may carry personal data:
workflow ids are stored and indexed by Temporal in plain text.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime


def new_user_id() -> str:
    """A fresh internal user id (`u_` + 20 hex chars)."""
    return "u_" + secrets.token_hex(10)


def new_device_id() -> str:
    return "d_" + secrets.token_hex(10)


def new_broadcast_id() -> str:
    """A fresh broadcast id (`b_` + 16 hex chars); its workflow is `broadcast/{id}`."""
    return "b_" + secrets.token_hex(8)


def new_message_id() -> str:
    """An id for an event that arrived without a `messageId`."""
    return "evt_" + secrets.token_hex(12)


def journey_workflow_id(journey: str, user_id: str, key: str | None = None) -> str:
    """`journey/{name}/{uid}` or `journey/{name}/{uid}/{key}` for keyed journeys."""
    if "/" in journey:
        raise ValueError("journey names cannot contain '/'")
    base = f"journey/{journey}/{user_id}"
    return f"{base}/{key}" if key else base


def due_message_id(journey: str, user_id: str, key: str, due_at: datetime) -> str:
    """The message id of the event a due trigger fires: one per (journey, user, key, due
    instant), so a sweep retried after a crash writes no second event."""
    return f"due/{journey}/{user_id}/{key}/{int(due_at.timestamp())}"[:300]


def journey_of_workflow(workflow_id: str) -> str | None:
    """The journey a journey's workflow id names (`journey/{name}/...`), else None."""
    parts = workflow_id.split("/", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "journey" else None


def user_of_workflow(workflow_id: str | None) -> str | None:
    """The internal user id a journey's workflow id names (`journey/{name}/{uid}[/{key}]`),
    or None for workflows that belong to no one user."""
    if not workflow_id:
        return None
    parts = workflow_id.split("/", 3)
    if len(parts) >= 3 and parts[0] == "journey" and parts[2].startswith("u_"):
        return parts[2]
    return None


def send_idempotency_key(workflow_id: str, first_run_id: str, step: str) -> str:
    """The key of one `send` step of one journey entry.

    The first execution run id separates two entries of the same user into the same journey
    (same workflow id) while staying stable across retries, replays and continue-as-new.
    """
    return f"{workflow_id}/{first_run_id}/{step}"


def device_idempotency_key(send_key: str, device_id: str) -> str:
    """One message row per device of a push send."""
    return f"{send_key}/{device_id}"


def message_id(idempotency_key: str) -> str:
    """The message id for an idempotency key: deterministic, so a retry finds its row."""
    return "m_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def hash_write_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_write_key() -> str:
    return "nk_" + secrets.token_urlsafe(24)


def inbound_sender_key(phone: str) -> str:
    """The anonymous id of an unknown number that texted in (a hash, not the number)."""
    return "sms:" + hashlib.sha256(f"inbound:{phone}".encode()).hexdigest()[:24]


def erasure_hash(user_id: str, external_id: str, salt: str) -> str:
    """Salted hash kept after GDPR erasure so consent evidence stays provable."""
    return hashlib.sha256(f"{salt}:{user_id}:{external_id}".encode()).hexdigest()
