"""Segments: named audiences over profile attributes, consent and event history.

`segment("name", "expr")` declares one in code (it is on the journey surface, `engine`);
`[segments]` in `nudge.toml` declares them in config. `language` parses an expression,
`compile` turns it into SQL, `engine.store.segments` asks the database who is in one.
"""

from engine.segments.language import SegmentError, parse
from engine.segments.registry import Segment, Segments, declared, segment

__all__ = ["Segment", "SegmentError", "Segments", "declared", "parse", "segment"]
