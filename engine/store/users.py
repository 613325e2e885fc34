"""Users: internal ids for the product's userIds, and their profiles."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine import ids
from engine.clock import now
from engine.store import phones
from engine.store.models import User
from engine.store.rows import insert_ignore

PROFILE_TRAITS = ("timezone", "locale", "phone", "email")


class ProfileError(ValueError):
    """A profile field that cannot be stored; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


async def find_user(session: AsyncSession, *, external_id: str) -> User | None:
    """The live (not erased) user with this external id, if any."""
    return (
        await session.execute(select(User).where(User.external_id == external_id))
    ).scalar_one_or_none()


async def get_user(session: AsyncSession, *, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def ensure_user(
    session: AsyncSession, *, external_id: str | None, anonymous_id: str | None = None
) -> User:
    """The user for a Segment call, created on first sight (race-safe)."""
    key = external_id if external_id else f"anonymous:{anonymous_id}"
    user = await find_user(session, external_id=key)
    if user is not None:
        return user
    stamp = now()
    await insert_ignore(
        session,
        User,
        {
            "id": ids.new_user_id(),
            "external_id": key,
            "anonymous_id": anonymous_id,
            "attributes": {},
            "created_at": stamp,
            "updated_at": stamp,
        },
        conflict=["external_id"],
    )
    user = await find_user(session, external_id=key)
    assert user is not None
    return user


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


def apply_profile(user: User, fields: dict[str, Any]) -> None:
    """Set profile fields (timezone, locale, phone, email) and merge other attributes.

    Validates before changing anything, so a bad field changes nothing.
    """
    clean: dict[str, Any] = {}
    attributes = dict(user.attributes or {})
    for name, value in fields.items():
        if name in PROFILE_TRAITS:
            if value is None:
                clean[name] = None
            elif not isinstance(value, str):
                raise ProfileError(name, f"{name} must be a string")
            elif name == "timezone":
                clean[name] = validate_timezone(value)
            elif name == "phone":
                clean[name] = normalise_phone(value)
            else:
                clean[name] = value
        else:
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
