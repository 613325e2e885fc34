"""Payloads of the due-trigger sweep (`engine/system/sweep.py`) and its activity."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel


class SweepState(BaseModel):
    """The sweep workflow's input, carried across continue-as-new."""

    rounds: int = 0
    """Rounds done by earlier runs (for `nudge` operators reading the history)."""
    profiles: ProfileCursor | None = None
    """How far the sweep has read changed profiles (date triggers on profile attributes)."""


class ProfileCursor(BaseModel):
    """The last profile change the sweep planned from: (updated_at, user id)."""

    updated_at: datetime
    user_id: str


class SweepRequest(BaseModel):
    """Fire every due trigger due at or before `at` (the workflow's clock, UTC)."""

    at: datetime
    profiles: ProfileCursor | None = None


class SweepResult(BaseModel):
    """What one sweep round did, and when the workflow should look again."""

    fired: int
    more: bool
    """A full batch was fired: look again at once."""
    next_due: datetime | None
    """When the earliest row left falls due (None: nothing planned)."""
    every: timedelta
    """The longest sleep between two rounds (`[triggers] sweep_every`)."""
    profiles: ProfileCursor | None = None


class SweepPlanned(BaseModel):
    """Signal to the sweep: an entry was planned for `due_at`, maybe sooner than it sleeps."""

    due_at: datetime
