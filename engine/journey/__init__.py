"""The journey contract, safe inside Temporal's workflow sandbox: the `Journey` base class,
the `@journey` declaration and its vocabulary. Nothing here does I/O."""

from engine.journey.base import Journey
from engine.journey.declare import Journeys, journey, registry
from engine.journey.settings import JourneySettings
from engine.journey.split import HOLDOUT, Variant
from engine.journey.triggers import Entered, Exited, Inactive, OnDate, Trigger
from engine.journey.vocabulary import (
    ALWAYS,
    EVENT_SIGNAL,
    SA_JOURNEY,
    SA_STEP,
    SA_USER,
    Goal,
    JourneyDefinitionError,
    JourneyExited,
    JourneySpec,
    JourneyState,
    Reentry,
)

__all__ = [
    "ALWAYS",
    "EVENT_SIGNAL",
    "HOLDOUT",
    "SA_JOURNEY",
    "SA_STEP",
    "SA_USER",
    "Entered",
    "Exited",
    "Goal",
    "Inactive",
    "Journey",
    "JourneyDefinitionError",
    "JourneyExited",
    "JourneySettings",
    "JourneySpec",
    "JourneyState",
    "Journeys",
    "OnDate",
    "Reentry",
    "Trigger",
    "Variant",
    "journey",
    "registry",
]
