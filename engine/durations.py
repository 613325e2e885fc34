"""Durations as people write them in `nudge.toml`: "90s", "15m", "4h", "1d", "1h30m"."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> Any:
    """Turn "1h30m" (or a number of seconds) into a `timedelta`; leave other values to pydantic.

    Raises `ValueError` naming the accepted units for a string that does not parse.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        return value
    text = value.strip().replace(" ", "")
    if text.startswith(("P", "-P")):  # ISO 8601, which pydantic parses itself
        return text
    if not text or _PART.sub("", text):
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 15m, 4h, 1d or 1h30m")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration`, in whole seconds ("3600s")."""
    return f"{value.total_seconds():g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A `timedelta` field that accepts "15m"-style strings and serialises back to seconds."""
