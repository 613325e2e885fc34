"""The journey test kit: a week of a journey in seconds, on real parts (see `kit`)."""

from engine.temporal.timeskip import TimeSkippingUnavailable
from engine.testing.kit import JourneyEnv, RunView, SentMessage, TestUser
from engine.testing.server import start_time_skipping_server

__all__ = [
    "JourneyEnv",
    "RunView",
    "SentMessage",
    "TestUser",
    "TimeSkippingUnavailable",
    "start_time_skipping_server",
]
