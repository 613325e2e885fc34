"""Time ranges as people give them to `nudge stats` and the stats API: "7d" (that long
before now), or an ISO 8601 instant with its zone."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.durations import parse_duration


def parse_instant(value: str, *, now: datetime) -> datetime:
    """`value` as a UTC instant: a duration ("7d", "12h") counts back from `now`; otherwise an
    ISO 8601 date-time with a zone. Raises `ValueError` saying what is accepted."""
    text = value.strip()
    try:
        back = parse_duration(text)
    except ValueError:
        back = None
    if isinstance(back, timedelta):
        return now - back
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(
            f"{value!r} is neither a duration (e.g. 7d, 12h) nor an ISO date-time with a zone"
        )
    return parsed


__all__ = ["parse_instant"]
