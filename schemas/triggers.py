"""Payloads of the due-trigger sweep (`engine/system/sweep.py`) and its activity."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel


class SweepState(BaseModel):
    """The sweep workflow's input, carried across continue-as-new."""

    rounds: int = 0
    """Rounds done by earlier runs (for `nudge` operators reading the history)."""


class SweepRequest(BaseModel):
    """Fire every due trigger due at or before `at` (the workflow's clock, UTC)."""

    at: datetime


class SweepResult(BaseModel):
    """What one sweep round did, and when the workflow should look again."""

    fired: int
    more: bool
    """A full batch was fired: look again at once."""
    next_due: datetime | None
    """When the earliest row left falls due (None: nothing planned)."""
    every: timedelta
    """The longest sleep between two rounds (`[triggers] sweep_every`)."""


class SweepPlanned(BaseModel):
    """Signal to the sweep: an entry was planned for `due_at`, maybe sooner than it sleeps."""

    due_at: datetime
