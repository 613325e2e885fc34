"""`nudge stats JOURNEY`: a journey's funnel (a small bar per step), its attribution, and
an experiment readout, as rich tables or `--json`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from engine.cli.common import CliError, database_settings, out, run

if TYPE_CHECKING:  # engine.analytics loads scipy: only when `nudge stats` runs
    from engine.analytics.models import ExperimentReadout, JourneyStats

BAR = 20
"""Width of a step's bar, in characters, for all of the runs that entered."""


def bar(part: int, whole: int) -> str:
    """`part` of `whole` as a bar of `BAR` cells (eighths for the last one)."""
    if whole <= 0:
        return ""
    eighths = round(BAR * 8 * min(part, whole) / whole)
    full, rest = divmod(eighths, 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[rest - 1] if rest else "")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _counts(found: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(found.items())) or "-"


def _funnel(stats: JourneyStats) -> None:
    window = f"since {stats.since:%Y-%m-%d %H:%M} UTC" if stats.since else "all time"
    head = Table(title=f"{stats.journey} ({window})", show_header=False)
    head.add_row("entered", str(stats.entered))
    head.add_row("open", str(stats.open))
    head.add_row("converted", f"{stats.converted} ({_pct(stats.converted, stats.entered)})")
    head.add_row("finished", _counts(stats.finished))
    head.add_row("exited", _counts(stats.exited))
    if stats.variants:
        head.add_row("variants", ", ".join(stats.variants))
    out.print(head)
    steps = Table(title="steps (runs)")
    for column in ("step", "reached", "", "sent", "delivered", "clicked", "opened"):
        steps.add_column(column, justify="left" if column in ("step", "") else "right")
    for column in ("failed", "deferred", "suppressed"):
        steps.add_column(column, justify="right" if column != "suppressed" else "left")
    for step in stats.steps:
        steps.add_row(
            step.step,
            str(step.reached),
            f"[cyan]{bar(step.reached, stats.entered)}[/] {_pct(step.reached, stats.entered)}",
            str(step.sent),
            str(step.delivered),
            str(step.clicked),
            str(step.opened),
            str(step.failed),
            str(step.deferred),
            _counts(step.suppressed),
        )
    out.print(steps)
    if stats.attribution:
        credit = Table(title="attribution (conversions)")
        for column in ("step", "template", "last touch", "any touch"):
            credit.add_column(column)
        for row in stats.attribution:
            credit.add_row(row.step, row.template or "-", str(row.last_touch), str(row.any_touch))
        out.print(credit)


def _readout(readout: ExperimentReadout) -> None:
    table = Table(title=f"experiment {readout.experiment} (control: {readout.control or '-'})")
    for column in ("arm", "users", "conversions", "rate", "lift", "95% CI", "p", "P(beat)"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm in readout.arms:
        ci = "-" if arm.ci_low is None else f"[{arm.ci_low:+.1%}, {arm.ci_high or 0:+.1%}]"
        table.add_row(
            arm.variant + (" (holdout)" if arm.holdout else ""),
            str(arm.users),
            str(arm.conversions),
            f"{arm.rate:.1%}",
            "-" if arm.lift is None else f"{arm.lift:+.1%}",
            ci,
            "-" if arm.p_value is None else f"{arm.p_value:.3f}",
            "-" if arm.prob_beat_control is None else f"{arm.prob_beat_control:.1%}",
        )
    out.print(table)
    for warning in readout.warnings:
        out.print(f"[yellow]warning:[/] {warning}")


def stats(
    journey: Annotated[str, typer.Argument(help="the journey's name, e.g. win_back")],
    since: Annotated[
        str | None,
        typer.Option("--since", help="runs entered since: 7d, 12h, or an ISO date-time"),
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="and before this")] = None,
    version: Annotated[str | None, typer.Option("--version", help="only this build id")] = None,
    variant: Annotated[str | None, typer.Option("--variant", help="only this arm")] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="also the readout of this experiment")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """A journey's funnel per step, conversions, attribution; an experiment's readout."""
    from engine.analytics import experiment_readout, journey_stats
    from engine.analytics.window import parse_instant
    from engine.clock import now
    from engine.context import Context

    def instant(flag: str, value: str | None) -> Any:
        try:
            return None if value is None else parse_instant(value, now=now())
        except ValueError as exc:
            raise CliError(f"{flag}: {exc}", code=2) from None

    async def go() -> None:
        start, end = instant("--since", since), instant("--until", until)
        async with Context.opened(database_settings()) as context, context.sessions() as db:
            found = await journey_stats(
                db, journey, since=start, until=end, version=version, variant=variant
            )
            readout = await experiment_readout(db, experiment, since=start) if experiment else None
        if found.entered == 0 and start is None and version is None and variant is None:
            raise CliError(f"no runs of journey {journey!r} (see `nudge journeys`)")
        if as_json:
            body: dict[str, Any] = {"stats": found.model_dump(mode="json")}
            if readout is not None:
                body["experiment"] = readout.model_dump(mode="json")
            out.print_json(json.dumps(body))
            return
        _funnel(found)
        if readout is not None:
            _readout(readout)

    run(go)
