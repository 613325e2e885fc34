"""Nudge's platform. Journeys import only from here (the sandbox-safe journey surface):

from engine import Channel, Duration, Goal, Journey, JourneyEntry, JourneyResult, journey
"""

from engine.durations import Duration
from engine.journey import (
    ALWAYS,
    Goal,
    Journey,
    JourneyDefinitionError,
    JourneyExited,
    JourneySettings,
    JourneyState,
    Variant,
    journey,
)
from engine.segments.registry import segment
from schemas.common import MARKETING, OPT_IN_REQUESTED, TRANSACTIONAL, Channel, SendStatus
from schemas.events import JourneyEvent
from schemas.journeys import JourneyEntry, JourneyResult, SendResult

__all__ = [
    "ALWAYS",
    "MARKETING",
    "OPT_IN_REQUESTED",
    "TRANSACTIONAL",
    "Channel",
    "Duration",
    "Goal",
    "Journey",
    "JourneyDefinitionError",
    "JourneyEntry",
    "JourneyEvent",
    "JourneyExited",
    "JourneyResult",
    "JourneySettings",
    "JourneyState",
    "SendResult",
    "SendStatus",
    "Variant",
    "journey",
    "segment",
]
