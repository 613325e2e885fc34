"""Named segments: declared in code with `segment(...)` or in `nudge.toml` `[segments]`.

A declaration in code only records the text and where it was written (the workflow
sandbox re-imports journey modules per run, so declaring must be cheap and repeatable);
`Segments` parses them all at once when a process starts, so a bad expression stops the
worker or the API with the file, line, column and reason.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.segments.language import Node, SegmentError, parse


@dataclass(frozen=True)
class Segment:
    """A named expression, and where it was written (`source`, `line`)."""

    name: str
    expression: str
    source: str = "<segment>"
    line: int = 1
    description: str | None = None

    def parsed(self) -> Node:
        """The expression's tree; `SegmentError` (with the position) when it is not valid."""
        return parse(self.expression, source=self.source, line=self.line)


_DECLARED: dict[str, Segment] = {}


def segment(name: str, expression: str, *, description: str | None = None) -> str:
    """Declare the segment `name` (e.g. in a journey module); returns the name, so a journey
    can say `audience=segment("pro_idle", 'plan == "pro" and not did("App Opened", within="14d")')`.

    Declaring the same name twice with the same expression is allowed (modules are
    re-imported); with a different one it is refused (`SegmentError`).
    """
    if not name or "/" in name:
        raise SegmentError(f"segment names must be non-empty and contain no '/': {name!r}")
    caller = sys._getframe(1)
    where, line = caller.f_code.co_filename, caller.f_lineno
    declared_here = Segment(name, expression, where, line, description)
    known = _DECLARED.get(name)
    if known is not None and known.expression != expression:
        raise SegmentError(
            f"segment {name!r} is already declared at {known.source}:{known.line}",
            source=where,
            line=line,
        )
    _DECLARED.setdefault(name, declared_here)
    return name


def declared() -> dict[str, Segment]:
    """Every segment declared in code so far (by the modules imported so far)."""
    return dict(_DECLARED)


class Segments:
    """The segments a process knows: code and config together, each parsed once."""

    def __init__(self, segments: Iterable[Segment]) -> None:
        self._segments: dict[str, Segment] = {}
        self._trees: dict[str, Node] = {}
        for item in segments:
            known = self._segments.get(item.name)
            if known is not None and known.expression != item.expression:
                raise SegmentError(
                    f"segment {item.name!r} is also declared at {known.source}:{known.line}",
                    source=item.source,
                    line=item.line,
                )
            self._segments[item.name] = item
            self._trees[item.name] = item.parsed()

    @classmethod
    def of(cls, config_segments: Mapping[str, str]) -> Segments:
        """Those declared in code so far (import the journeys first) and `[segments]`."""
        from_config = {
            name: Segment(name, expression, source=f"nudge.toml [segments] {name}")
            for name, expression in config_segments.items()
        }
        return cls.from_sources(code=declared(), config=from_config)

    @classmethod
    def from_sources(
        cls, *, code: Mapping[str, Segment], config: Mapping[str, Segment]
    ) -> Segments:
        return cls([*code.values(), *config.values()])

    def names(self) -> list[str]:
        return sorted(self._segments)

    def __contains__(self, name: object) -> bool:
        return name in self._segments

    def get(self, name: str) -> Segment:
        """The segment `name`; `KeyError` when there is none."""
        return self._segments[name]

    def tree(self, name: str) -> Node:
        return self._trees[name]

    def all(self) -> list[Segment]:
        return [self._segments[n] for n in self.names()]
