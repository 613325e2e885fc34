"""Experiment arms: a deterministic assignment from (experiment, user). Pure and sandbox-safe."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

HOLDOUT = "holdout"

T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    """The arm a run was assigned to. `in_holdout` runs get no messages (`send` suppresses
    them with reason `holdout`) but are still measured against the goal."""

    experiment: str
    name: str
    arms: tuple[str, ...]
    """Every arm but the holdout, in declaration order (the first is the control)."""

    @property
    def in_holdout(self) -> bool:
        return self.name == HOLDOUT

    def pick(self, **by_arm: T) -> T:
        """The value for this run's arm, e.g. `variant.pick(discount="offer_discount",
        content="offer_content")`. The holdout gets the control's (first arm's) value, so a
        suppressed send still names a real template. Every arm must be given."""
        missing = [arm for arm in self.arms if arm not in by_arm]
        extra = [arm for arm in by_arm if arm not in self.arms]
        if missing or extra:
            raise ValueError(
                f"pick() for experiment {self.experiment!r} needs exactly the arms "
                f"{', '.join(self.arms)} (missing: {missing or '-'}, unknown: {extra or '-'})"
            )
        return by_arm[self.arms[0] if self.in_holdout else self.name]

    def __str__(self) -> str:
        return self.name


def assign(
    experiment: str,
    user_id: str,
    arms: Mapping[str, float] | tuple[str, ...],
    *,
    holdout: float = 0.0,
) -> Variant:
    """The arm of `user_id` in `experiment`: the same on every call, worker and replay.

    `arms` maps names to weights (or is a tuple of equal-weight names). A `holdout` fraction
    in [0, 1) of users gets the arm `"holdout"`; the rest are split by weight.
    """
    weights = dict.fromkeys(arms, 1.0) if isinstance(arms, tuple) else dict(arms)
    if not weights or any(w <= 0 for w in weights.values()) or HOLDOUT in weights:
        raise ValueError("arms need positive weights and may not be named 'holdout'")
    if not 0.0 <= holdout < 1.0:
        raise ValueError("holdout must be a fraction in [0, 1)")
    point = int(hashlib.sha256(f"{experiment}:{user_id}".encode()).hexdigest()[:15], 16)
    fraction = point / float(16**15)
    names = tuple(weights)
    if fraction < holdout:
        return Variant(experiment, HOLDOUT, names)
    scaled = (fraction - holdout) / (1 - holdout) * sum(weights.values())
    for name, weight in weights.items():
        if scaled < weight:
            return Variant(experiment, name, names)
        scaled -= weight
    return Variant(experiment, names[-1], names)
