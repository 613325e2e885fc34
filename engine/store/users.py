"""Users: internal ids for the product's userIds, their profiles, and merges.

A user is found by its key: the product's `userId`, or `anonymous:<anonymousId>` before
the product knows who it is. When an anonymous user turns out to be a known one (an
`identify` or `track` carrying both ids, or an `alias`), the anonymous user is merged into
the known one: its events, devices, consent log, messages and ended runs move over, its
open runs end (outcome `merged`: the caller terminates their workflows), and its key keeps
pointing at the known user (`merged_into`), so later calls under the old id land there too.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ids
from engine.clock import now
from engine.store import data_keys, phones
from engine.store.models import Consent, Device, Event, JourneyRun, Message, User
from engine.store.rows import insert_many, one_of, per_dialect, table_of
from schemas.common import RunStatus
from schemas.events import check_storable

PROFILE_TRAITS = ("timezone", "locale", "phone", "email")
MAX_EMAIL = 320
MAX_LOCALE = 35
_LOCALE = re.compile(r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$")


class ProfileError(ValueError):
    """A profile field that cannot be stored; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


async def find_user(session: AsyncSession, *, external_id: str) -> User | None:
    """The user with this key (userId or `anonymous:<id>`), following a merge."""
    user = (
        await session.execute(select(User).where(User.external_id == external_id))
    ).scalar_one_or_none()
    if user is not None and user.merged_into is not None:
        user = await session.get(User, user.merged_into)
    return None if user is None or user.erased_at is not None else user


async def get_user(session: AsyncSession, *, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def ensure_users(session: AsyncSession, keys: Iterable[str]) -> dict[str, str]:
    """Internal ids for user keys, creating the missing users (race-safe): one query when
    every user exists, three when some are new. A merged key maps to the user it joined."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    found = await _ids_for(session, wanted)
    missing = [key for key in wanted if key not in found]
    if missing:
        stamp = now()
        rows: list[dict[str, Any]] = [
            {
                "id": ids.new_user_id(),
                "external_id": key,
                "anonymous_id": key.removeprefix("anonymous:") if _anonymous(key) else None,
                "attributes": {},
                "created_at": stamp,
                "updated_at": stamp,
            }
            for key in missing
        ]
        created = [
            uid
            for (uid,) in await insert_many(
                session, User, rows, conflict=["external_id"], returning=["id"]
            )
        ]
        await data_keys.add_salts(session, user_ids=created)
        found.update(await _ids_for(session, missing))
    return found


async def existing_users(session: AsyncSession, keys: Iterable[str]) -> dict[str, str]:
    """Internal ids of the keys that have a user of their own (none is created; a key
    already merged into someone is left out: it is not a user to merge any more)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(_unmerged(session), {"keys": wanted})
    return {key: uid for key, uid in rows if key is not None}


async def _ids_for(session: AsyncSession, keys: list[str]) -> dict[str, str]:
    rows = await session.execute(_by_keys(session), {"keys": keys})
    return {key: merged or uid for key, uid, merged in rows if key is not None}


# On the table, not the model: a column select through the ORM costs its loading machinery.
@per_dialect
def _by_keys(dialect: str) -> Select[str | None, str, str | None]:
    users = table_of(User)
    return select(users.c.external_id, users.c.id, users.c.merged_into).where(
        one_of(dialect, users.c.external_id, "keys")
    )


@per_dialect
def _unmerged(dialect: str) -> Select[str | None, str]:
    users = table_of(User)
    return select(users.c.external_id, users.c.id).where(
        one_of(dialect, users.c.external_id, "keys"), users.c.merged_into.is_(None)
    )


async def ensure_user(
    session: AsyncSession, *, external_id: str | None, anonymous_id: str | None = None
) -> User:
    """The user for a Segment call, created on first sight (race-safe)."""
    key = external_id if external_id else f"anonymous:{anonymous_id}"
    uid = (await ensure_users(session, [key]))[key]
    user = await session.get(User, uid)
    assert user is not None
    return user


def _anonymous(key: str) -> bool:
    return key.startswith("anonymous:")


@dataclass
class Merged:
    """What merging users did: the workflow ids of the runs it ended (to terminate)."""

    ended_runs: list[str] = field(default_factory=list)
    merged: int = 0


async def merge(session: AsyncSession, *, source: str, target: str, into: Merged) -> None:
    """Merge user `source` (e.g. an anonymous visitor) into `target` (internal ids).

    Idempotent: a user already merged, or merged into itself, is left alone. The caller
    commits, then terminates `into.ended_runs`.
    """
    if source == target:
        return
    old = await session.get(User, source)
    new = await session.get(User, target)
    if old is None or new is None or old.merged_into is not None or old.erased_at is not None:
        return
    stamp = now()
    # Events: a message id both users have is kept twice, the source's renamed, so
    # (user, message id) stays unique and nothing an entry points at is lost.
    taken = select(Event.message_id).where(Event.user_id == target).scalar_subquery()
    await session.execute(
        update(Event)
        .where(Event.user_id == source, Event.message_id.in_(taken))
        .values(message_id=Event.message_id + f"#merged:{source}")
    )
    for model in (Event, Device, Consent, Message):
        await session.execute(update(model).where(model.user_id == source).values(user_id=target))
    open_runs = list(
        await session.scalars(
            select(JourneyRun.workflow_id).where(
                JourneyRun.user_id == source, JourneyRun.status == RunStatus.OPEN
            )
        )
    )
    await session.execute(
        update(JourneyRun)
        .where(JourneyRun.user_id == source, JourneyRun.status == RunStatus.OPEN)
        .values(status=RunStatus.TERMINATED, outcome="merged", ended_at=stamp)
    )
    await session.execute(
        update(JourneyRun).where(JourneyRun.user_id == source).values(user_id=target)
    )
    for name in PROFILE_TRAITS:
        if getattr(new, name) is None and getattr(old, name) is not None:
            setattr(new, name, getattr(old, name))
    new.attributes = {**(old.attributes or {}), **(new.attributes or {})}
    new.anonymous_id = new.anonymous_id or old.anonymous_id
    new.updated_at = stamp
    old.merged_into = target
    old.attributes = {}
    old.timezone = old.locale = old.phone = old.email = None
    old.updated_at = stamp
    into.ended_runs.extend(open_runs)
    into.merged += 1


def validate_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ProfileError("timezone", f"unknown IANA time zone {value!r}") from exc
    return value


def normalise_phone(value: str) -> str:
    """E.164 with `phonenumbers`; raises `ProfileError` naming the field."""
    try:
        return phones.normalise_phone(value)
    except ValueError as exc:
        raise ProfileError("phone", str(exc)) from exc


def _profile_value(name: str, value: str) -> str:
    if name == "timezone":
        return validate_timezone(value)
    if name == "phone":
        return normalise_phone(value)
    if name == "email" and (len(value) > MAX_EMAIL or "@" not in value):
        raise ProfileError(name, f"email must be an address of at most {MAX_EMAIL} characters")
    if name == "locale" and (len(value) > MAX_LOCALE or not _LOCALE.match(value)):
        raise ProfileError(name, f"locale must be a BCP 47 tag of at most {MAX_LOCALE} characters")
    return value


def validate_profile(fields: dict[str, Any]) -> dict[str, Any]:
    """The profile fields of `fields` (timezone, locale, phone, email) as they would be
    stored; raises `ProfileError` naming the first field that cannot be. Other traits are
    only checked to be storable."""
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        try:
            check_storable(value, name)
            check_storable(name, "attribute names")
        except ValueError as exc:
            raise ProfileError(name, str(exc)) from None
        if name in PROFILE_TRAITS:
            if value is not None and not isinstance(value, str):
                raise ProfileError(name, f"{name} must be a string")
            clean[name] = None if value is None else _profile_value(name, value)
    return clean


def apply_profile(user: User, fields: dict[str, Any], *, only_missing: bool = False) -> None:
    """Set profile fields (timezone, locale, phone, email) and merge other attributes.

    Validates before changing anything, so a bad field changes nothing. `only_missing`:
    set only what the profile does not have yet (facts from an event's `context`).
    """
    clean = validate_profile(fields)
    if only_missing:
        clean = {name: value for name, value in clean.items() if getattr(user, name) is None}
    attributes = dict(user.attributes or {})
    for name, value in fields.items():
        if name not in PROFILE_TRAITS and (not only_missing or name not in attributes):
            attributes[name] = value
    for name, value in clean.items():
        setattr(user, name, value)
    user.attributes = attributes
    user.updated_at = now()


def profile_context(user: User) -> dict[str, Any]:
    """What templates see as `user`: attributes first, then the profile fields."""
    context: dict[str, Any] = dict(user.attributes or {})
    context.update(
        id=user.external_id,
        timezone=user.timezone,
        locale=user.locale,
    )
    return context


async def search_users(session: AsyncSession, *, query: str, limit: int = 50) -> list[User]:
    """Users whose product id, email or phone is exactly `query` (a phone is matched in its
    E.164 form, as stored; an erased user keeps only a salted hash and is never found)."""
    text = query.strip()
    if not text:
        return []
    conditions = [User.external_id == text, User.email == text]
    with contextlib.suppress(ValueError):  # not a phone number: ids and emails only
        conditions.append(User.phone == phones.normalise_phone(text))
    rows = await session.scalars(
        select(User)
        .where(or_(*conditions), User.merged_into.is_(None), User.erased_at.is_(None))
        .order_by(User.created_at.desc(), User.id)
        .limit(limit)
    )
    return list(rows)


async def recent_users(session: AsyncSession, *, limit: int = 50, offset: int = 0) -> list[User]:
    """Users newest first (merged and erased ones left out)."""
    rows = await session.scalars(
        select(User)
        .where(User.merged_into.is_(None), User.erased_at.is_(None))
        .order_by(User.created_at.desc(), User.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows)
