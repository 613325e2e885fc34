"""Analytics over Nudge's own tables: funnels, attribution, experiment readouts.

Read-only queries (they never write or commit); the caller owns the session, which may be
on a read replica.
"""

from engine.analytics.experiments import experiment_readout
from engine.analytics.funnels import journey_stats, list_journeys
from engine.analytics.models import (
    Arm,
    AttributionRow,
    ExperimentReadout,
    JourneyStats,
    JourneySummary,
    StepStats,
)

__all__ = [
    "Arm",
    "AttributionRow",
    "ExperimentReadout",
    "JourneyStats",
    "JourneySummary",
    "StepStats",
    "experiment_readout",
    "journey_stats",
    "list_journeys",
]
