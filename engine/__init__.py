"""Nudge's platform. Journeys import only from here (the sandbox-safe journey surface):

from engine import Channel, Duration, Goal, Journey, JourneyEntry, JourneyResult, journey

The names are imported on first use (PEP 562 `__getattr__`), so a process that only needs a
corner of `engine` (e.g. `nudge --help`) does not pay for the journey machinery.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.durations import Duration
    from engine.journey import (
        ALWAYS,
        Entered,
        Exited,
        Goal,
        Inactive,
        Journey,
        JourneyDefinitionError,
        JourneyExited,
        JourneySettings,
        JourneyState,
        OnDate,
        Variant,
        journey,
    )
    from engine.segments.registry import segment
    from schemas.common import MARKETING, OPT_IN_REQUESTED, TRANSACTIONAL, Channel, SendStatus
    from schemas.events import JourneyEvent
    from schemas.journeys import JourneyEntry, JourneyResult, SendResult

_FROM = {
    "Duration": "engine.durations",
    **dict.fromkeys(
        (
            "ALWAYS",
            "Entered",
            "Exited",
            "Goal",
            "Inactive",
            "Journey",
            "JourneyDefinitionError",
            "JourneyExited",
            "JourneySettings",
            "JourneyState",
            "OnDate",
            "Variant",
            "journey",
        ),
        "engine.journey",
    ),
    **dict.fromkeys(
        ("MARKETING", "OPT_IN_REQUESTED", "TRANSACTIONAL", "Channel", "SendStatus"),
        "schemas.common",
    ),
    "JourneyEvent": "schemas.events",
    "segment": "engine.segments.registry",
    **dict.fromkeys(("JourneyEntry", "JourneyResult", "SendResult"), "schemas.journeys"),
}


def __getattr__(name: str) -> Any:
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_FROM])


class _Engine(types.ModuleType):
    """`engine.journey` is both a sub-package and the decorator journeys import; importing
    the sub-package binds its name on `engine`, and here the decorator wins, as it did when
    this module imported it eagerly (`from engine import journey` is the decorator)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "journey" and isinstance(value, types.ModuleType):
            value = value.journey
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Engine


__all__ = [
    "ALWAYS",
    "MARKETING",
    "OPT_IN_REQUESTED",
    "TRANSACTIONAL",
    "Channel",
    "Duration",
    "Entered",
    "Exited",
    "Goal",
    "Inactive",
    "Journey",
    "JourneyDefinitionError",
    "JourneyEntry",
    "JourneyEvent",
    "JourneyExited",
    "JourneyResult",
    "JourneySettings",
    "JourneyState",
    "OnDate",
    "SendResult",
    "SendStatus",
    "Variant",
    "journey",
    "segment",
]
