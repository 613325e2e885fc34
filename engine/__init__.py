"""Nudge's platform. Journeys import only from here:

from engine import ALWAYS, Channel, Goal, Journey, JourneySettings, journey
"""

from engine.journey import (
    ALWAYS,
    Goal,
    Journey,
    JourneyExited,
    JourneySettings,
    JourneyState,
    journey,
)
from schemas.common import Channel, SendStatus
from schemas.events import JourneyEvent
from schemas.journeys import JourneyEntry, JourneyResult, SendResult

__all__ = [
    "ALWAYS",
    "Channel",
    "Goal",
    "Journey",
    "JourneyEntry",
    "JourneyEvent",
    "JourneyExited",
    "JourneyResult",
    "JourneySettings",
    "JourneyState",
    "SendResult",
    "SendStatus",
    "journey",
]
