"""The segments a process knows: those declared in code (imported with the journeys) and
those in `nudge.toml` `[segments]`, parsed once at start (a bad one stops the process with
its file, line, column and reason)."""

from __future__ import annotations

from engine.config.nudge_toml import NudgeConfig
from engine.segments import Segments


def known_segments(config: NudgeConfig) -> Segments:
    """Code and config segments together; `SegmentError` if one is invalid or two clash."""
    from engine.app.journeys import shipped_journeys

    shipped_journeys()  # imports `workflows`, whose modules declare their segments
    return Segments.of(config.segments)
