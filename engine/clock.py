"""The project's clock: one `now()` for every stamp Nudge writes (UTC, timezone-aware).

Workflow code never calls this (it uses `workflow.now()`); activities that act for a run
take the run's time from their request, so virtual time in tests flows through.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current instant, timezone-aware, in UTC."""
    return datetime.now(UTC)
