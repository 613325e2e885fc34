"""What a metric returns, and how it is printed: every pair's values, both medians, and
the ratio of the medians (always the second side over the first, "nudge/bare")."""

from __future__ import annotations

import math
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench._common import load_average


@dataclass(frozen=True)
class Measure:
    """One number a metric reports per sample. `target` is the ratio second/first side
    the product must reach: at least `target` when higher is better, at most when lower;
    None for a number shown to explain the others (CPU per event, counts)."""

    key: str
    unit: str
    higher_is_better: bool
    target: float | None = None

    def verdict(self, ratio: float) -> str:
        if self.target is None:
            return "for information"
        if math.isnan(ratio):
            return "no ratio"
        met = ratio >= self.target if self.higher_is_better else ratio <= self.target
        return "meets target" if met else "MISSES target"

    def target_text(self) -> str:
        better = "higher" if self.higher_is_better else "lower"
        if self.target is None:
            return f"{better} is better"
        sign = ">=" if self.higher_is_better else "<="
        return f"{better} is better; target {sign} {self.target:g}x"


Values = dict[str, float]
Sample = Callable[[int], Awaitable[Values]]
"""One side's sample for pair i."""


@dataclass
class Pair:
    """One bare sample and the Nudge sample right after it, with the 1-minute load
    average read just before each."""

    load_first: float
    first: Values
    load_second: float
    second: Values


@dataclass
class Result:
    """A metric's pairs (or, for a one-sided metric, `lines` only)."""

    name: str
    method: str
    measures: list[Measure] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    sides: tuple[str, str] = ("bare", "nudge")
    lines: list[str] = field(default_factory=list)

    def medians(self, measure: Measure) -> tuple[float, float, float]:
        """(first side's median, second side's median, second/first)."""
        first = _median([p.first.get(measure.key, math.nan) for p in self.pairs])
        second = _median([p.second.get(measure.key, math.nan) for p in self.pairs])
        ratio = second / first if first and not math.isnan(first) else math.nan
        return first, second, ratio


async def run_pairs(
    result: Result,
    pairs: int,
    first: Sample,
    second: Sample,
) -> Result:
    """Run `first(i)` then `second(i)` for i in 0..pairs-1, printing each pair as it ends."""
    for i in range(pairs):
        load_first = load_average()
        a = await first(i)
        load_second = load_average()
        b = await second(i)
        result.pairs.append(Pair(load_first, a, load_second, b))
        shown = ", ".join(
            f"{m.key} {_num(a.get(m.key))} / {_num(b.get(m.key))}"
            for m in result.measures
            if m.target is not None
        )
        print(
            f"  [{result.name}] pair {i + 1}/{pairs} (load {load_first:.2f} / {load_second:.2f}):"
            f" {result.sides[0]} / {result.sides[1]}: {shown}",
            flush=True,
        )
    return result


def print_result(result: Result) -> None:
    print(f"\n=== {result.name} ===")
    print(f"method: {result.method}")
    for line in result.lines:
        print(f"  {line}")
    a, b = result.sides
    for measure in result.measures:
        first, second, ratio = result.medians(measure)
        print(f"  {measure.key} ({measure.unit}):")
        print(f"    {'pair':>4}  {'load before':>13}  {a:>16}  {b:>16}  {b}/{a}")
        for i, pair in enumerate(result.pairs, 1):
            x, y = pair.first.get(measure.key), pair.second.get(measure.key)
            each = y / x if x and y is not None else math.nan
            loads = f"{pair.load_first:.2f} / {pair.load_second:.2f}"
            print(f"    {i:>4}  {loads:>13}  {_num(x):>16}  {_num(y):>16}  {each:.2f}")
        print(
            f"    {'median':>4}  {'':>13}  {_num(first):>16}  {_num(second):>16}  {ratio:.2f}"
            f"  ({measure.target_text()}: {measure.verdict(ratio)})"
        )


def print_summary(results: list[Result]) -> None:
    print("\n=== summary (medians; ratio = second side / first side) ===")
    print(f"{'metric':<16} {'measure':<28} {'first':>10} {'second':>10} {'ratio':>6}  target")
    for result in results:
        for measure in result.measures:
            if measure.target is None:
                continue
            first, second, ratio = result.medians(measure)
            sign = ">=" if measure.higher_is_better else "<="
            print(
                f"{result.name:<16} {measure.key:<28} {_num(first):>10} {_num(second):>10}"
                f" {ratio:>6.2f}  {sign} {measure.target:g}x {measure.verdict(ratio)}"
            )
        if not result.measures:
            for line in result.lines:
                print(f"{result.name:<16} {line}")


def _median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
