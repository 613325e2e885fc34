"""`nudge simulate JOURNEY --script FILE`: a journey's timeline in virtual time, in seconds.

Registered in engine/cli.py with `app.command("simulate")(simulate)`. It never touches
production: it starts its own Temporal dev server (time skipping on, free port, state in a
temp dir) and its own SQLite database in a temp dir, and delivers to recording providers.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from engine.cli.common import err, out

if TYPE_CHECKING:
    from engine.testing.simulate import Outcome

_STYLES = {
    "event": "cyan",
    "entry": "blue",
    "wait": "dim",
    "deferred": "yellow",
    "sent": "green",
    "suppressed": "red",
    "failed": "bold red",
    "exit": "magenta",
}


def simulate(
    journey: Annotated[str, typer.Argument(help="journey name, e.g. abandoned_cart")],
    script: Annotated[
        Path,
        typer.Option("--script", help="steps: a YAML or TOML file", exists=True, dir_okay=False),
    ],
    user_zone: Annotated[str | None, typer.Option(help="the user's IANA zone")] = None,
    user_locale: Annotated[str | None, typer.Option(help="the user's locale, e.g. fr")] = None,
    phone: Annotated[str | None, typer.Option(help="the user's phone (E.164)")] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(help="a device platform (repeatable: ios, android, web); default: one ios"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="nudge.toml: quiet hours, caps, journey overrides"),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help='virtual start: "HH:MM" (next, user local) or an ISO date-time'),
    ] = None,
) -> None:
    """Run JOURNEY for one user over a script in virtual time; print the timeline.

    Exits 1 when an `expect:` of the script fails, 2 when the script, the config or the
    journey name is wrong.
    """
    # Imported here so that `nudge --help` does not load the worker and the test kit.
    from engine.app.journeys import shipped_journeys
    from engine.config.nudge_toml import ConfigError, load_config
    from engine.testing import JourneyEnv, TimeSkippingUnavailable
    from engine.testing import simulate as sim

    try:
        plan = sim.load_script(script)
        settings = load_config(config)
    except (sim.ScriptError, ConfigError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    classes = shipped_journeys()
    if journey not in classes:
        err.print(f"[red]error:[/] no journey {journey!r}; known: {', '.join(sorted(classes))}")
        raise typer.Exit(2)
    spec = plan.user
    zone = user_zone or spec.zone or settings.timezone
    try:
        begin = sim.resolve_start(start or plan.start, zone, now=datetime.now(UTC))
    except sim.ScriptError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None

    async def go() -> Outcome:
        async with JourneyEnv.start(
            journeys={journey: classes[journey]}, config=settings, start_at=begin, quiet=True
        ) as env:
            user = await env.user(
                "simulated-user",
                zone=zone,
                locale=user_locale or spec.locale,
                devices=device or spec.devices or ["ios"],
                phone=phone or spec.phone or "+12025550123",
                consent=spec.consent,
                traits=spec.traits,
            )
            return await sim.simulate(env, user, journey, plan, start=begin or env.now())

    t0 = time.monotonic()
    try:
        outcome = asyncio.run(go())
    except TimeSkippingUnavailable as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    render(out, journey, outcome, wall=time.monotonic() - t0)
    if not outcome.passed:
        raise typer.Exit(1)


def render(out: Console, journey: str, outcome: Outcome, *, wall: float) -> None:
    """The timeline (virtual times: offset from start, user local, UTC) and the checks."""
    zone = ZoneInfo(outcome.zone)
    table = Table(title=f"{journey} for a user in {outcome.zone}, in virtual time")
    for column in ("+time", "local", "UTC", "kind", "what", "detail"):
        table.add_column(column, no_wrap=column in ("+time", "local", "UTC"))
    for row in outcome.rows:
        offset = row.at - outcome.start
        hours, rest = divmod(int(offset.total_seconds()), 3600)
        table.add_row(
            f"+{hours}h{rest // 60:02d}",
            row.at.astimezone(zone).strftime("%a %d %H:%M"),
            row.at.strftime("%m-%d %H:%M"),
            f"[{_STYLES.get(row.kind, '')}]{row.kind}[/]",
            row.what,
            row.detail,
        )
    out.print(table)
    if outcome.checks:
        checks = Table(title="expectations")
        for column in ("at", "expect", "result", "found"):
            checks.add_column(column)
        for c in outcome.checks:
            hours = int(c.step_at.total_seconds() // 3600)
            mark = "[green]ok[/]" if c.ok else "[bold red]FAILED[/]"
            checks.add_row(f"+{hours}h", c.expect.describe(), mark, c.found)
        out.print(checks)
    failed = sum(not c.ok for c in outcome.checks)
    verdict = f"[bold red]{failed} expectation(s) failed[/]" if failed else "[green]all good[/]"
    out.print(f"{verdict}  (wall time {wall:.1f} s)")
