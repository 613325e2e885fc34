"""`nudge segments`, `nudge broadcast` and `nudge schedules`: audiences, one-off entries into
a journey, and recurring journeys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.cli.common import CliError, fail, out, run
from engine.config.settings import Settings

if TYPE_CHECKING:
    from engine.config.nudge_toml import NudgeConfig
    from engine.context import Context
    from engine.schedules import Recurring
    from engine.segments import Segments

segments_app = typer.Typer(no_args_is_help=True, help="Segments: named audiences.")
schedules_app = typer.Typer(no_args_is_help=True, help="Recurring journeys (Temporal Schedules).")


def _settings() -> Settings:
    return Settings()


def _segments(config: NudgeConfig) -> Segments:
    from engine.app.segments import known_segments
    from engine.segments import SegmentError

    try:
        return known_segments(config)
    except SegmentError as error:
        raise CliError(str(error)) from None


@segments_app.command("list")
def segments_list() -> None:
    """Every segment, from code and nudge.toml."""
    from engine.app.segments import known_segments
    from engine.config.nudge_toml import ConfigError, load_config
    from engine.segments import SegmentError

    try:
        known = known_segments(load_config(_settings().config))
    except (SegmentError, ConfigError) as error:
        raise fail(str(error)) from None
    table = Table(title="segments")
    for column in ("segment", "expression", "declared in"):
        table.add_column(column)
    for item in known.all():
        table.add_row(item.name, item.expression, f"{item.source}:{item.line}")
    out.print(table)


@segments_app.command("show")
def segments_show(
    name: Annotated[str, typer.Argument(help="the segment's name")],
    sample: Annotated[int, typer.Option(help="members to show", min=0, max=100)] = 10,
) -> None:
    """A segment's size now and its first members (by internal id)."""
    from engine.app.segments import known_segments
    from engine.clock import now
    from engine.context import Context
    from engine.segments import SegmentError
    from engine.store import segments as members

    async def go() -> None:
        async with Context.opened(_settings()) as context:
            try:
                known = known_segments(context.config)
            except SegmentError as error:
                raise CliError(str(error)) from None
            if name not in known:
                raise CliError(f"no segment {name!r}; `nudge segments list` shows them")
            tree, at = known.tree(name), now()
            async with context.sessions() as db:
                size = await members.size(db, tree=tree, at=at)
                shown = await members.sample(db, tree=tree, at=at, limit=sample)
        out.print(f"[bold]{name}[/]: {known.get(name).expression}")
        out.print(f"{size} member{'s' if size != 1 else ''} now")
        for uid, external in shown:
            out.print(f"  {uid}  {external or '(anonymous)'}")

    run(go)


def broadcast(
    journey: Annotated[str, typer.Argument(help="the journey to enter members into")],
    segment: Annotated[str, typer.Option("--segment", help="the audience (a segment name)")],
    at: Annotated[
        str | None,
        typer.Option(help='when: "2026-12-24 09:00" (in nudge.toml\'s timezone unless --local)'),
    ] = None,
    local: Annotated[bool, typer.Option(help="--at is each user's own wall-clock time")] = False,
    rate: Annotated[float | None, typer.Option(help="entries per second", min=0.001)] = None,
    wait: Annotated[bool, typer.Option(help="follow progress until it is done")] = True,
) -> None:
    """Enter every member of SEGMENT into JOURNEY once (a Temporal workflow does it)."""
    from engine.app.journeys import shipped_journeys
    from engine.cli.ops import _connect
    from engine.context import Context
    from engine.temporal import broadcasts as starting

    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise fail(f'--at {at!r} is not a date and time such as "2026-12-24 09:00"') from None

    async def go() -> None:
        settings = _settings()
        async with Context.opened(settings) as context:
            if journey not in shipped_journeys():
                raise CliError(f"no journey {journey!r}; `nudge journeys` lists them")
            if segment not in _segments(context.config):
                raise CliError(f"no segment {segment!r}; `nudge segments list` shows them")
            try:
                request = starting.request_for(
                    journey=journey,
                    segment=segment,
                    at=when,
                    local=local,
                    rate=rate,
                    default_zone=context.config.timezone,
                )
            except starting.BroadcastRefused as refused:
                raise CliError(f"--{refused.field}: {refused.reason}") from None
            client = await _connect(settings)
            broadcast_id = await starting.start(
                client, context.sessions, request, task_queue=settings.task_queue
            )
            out.print(f"broadcast {broadcast_id}: {journey} to {segment}")
            if wait:
                await follow(context, broadcast_id)

    run(go)


async def follow(context: Context, broadcast_id: str, *, interval: float = 0.5) -> None:
    """A progress bar over the broadcast's row until it completes (or fails)."""
    from engine.store import broadcasts
    from schemas.broadcasts import BroadcastStatus

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out) as bar:
        task = bar.add_task("entering", total=None, note="")
        while True:
            async with context.sessions() as db:
                row = await broadcasts.get(db, broadcast_id=broadcast_id)
            if row is not None:
                note = f"{row.skipped} skipped" if row.skipped else ""
                if row.status == BroadcastStatus.WAITING and row.next_at is not None:
                    note = f"waiting for {row.next_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
                bar.update(task, total=row.total, completed=row.entered + row.skipped, note=note)
                if row.status in (BroadcastStatus.COMPLETED, BroadcastStatus.FAILED):
                    break
            await asyncio.sleep(interval)
    if row is not None:
        out.print(f"{row.status}: {row.entered} entered, {row.skipped} skipped")


def _recurring() -> tuple[Settings, list[Recurring]]:
    from engine.app.journeys import shipped_journeys
    from engine.config.nudge_toml import load_config
    from engine.temporal.schedules import recurring

    settings = _settings()
    try:
        config = load_config(settings.config)
        specs = [cls.__journey__ for cls in shipped_journeys().values()]
        return settings, recurring(specs, config)
    except ValueError as error:  # ConfigError too
        raise fail(str(error)) from None


@schedules_app.command("list")
def schedules_list(
    count: Annotated[int, typer.Option(help="next firings to show", min=1, max=20)] = 3,
) -> None:
    """Recurring journeys, their next firings (croniter) and state in Temporal."""
    from engine.cli.ops import _connect
    from engine.schedules import next_runs
    from engine.temporal.schedules import schedule_id

    settings, items = _recurring()

    async def go() -> None:
        states: dict[str, str] = {}
        try:
            client = await _connect(settings)
            for item in items:
                try:
                    described = await client.get_schedule_handle(
                        schedule_id(item.journey)
                    ).describe()
                except Exception:
                    states[item.journey] = "not registered (start a worker)"
                    continue
                paused = described.schedule.state.paused
                states[item.journey] = "paused" if paused else "active"
        except CliError:
            states = dict.fromkeys((i.journey for i in items), "?")
        now = datetime.now(UTC)
        if not items:
            out.print("no recurring journeys (@journey(schedule=...) or [schedules] in nudge.toml)")
        for item in items:
            out.print(
                f"[bold]{item.journey}[/]  {item.describe()}  audience {item.audience}  "
                f"overlap {item.overlap}  {states[item.journey]}"
            )
            for at in next_runs(item.cron, zone=item.fires_in, after=now, count=count):
                where = "in the first zone, UTC+14" if item.local else item.timezone
                local = at.astimezone(ZoneInfo(item.fires_in))
                out.print(f"  next: {at:%a %Y-%m-%d %H:%M} UTC ({local:%a %H:%M} {where})")

    run(go)


def _handle_command(action: str):  # type: ignore[no-untyped-def]
    def command(journey: Annotated[str, typer.Argument(help="the scheduled journey")]) -> None:
        from engine.cli.ops import _connect
        from engine.temporal.schedules import schedule_id

        settings, items = _recurring()
        if journey not in {i.journey for i in items}:
            raise fail(f"{journey!r} has no schedule; `nudge schedules list` shows them")

        async def go() -> None:
            client = await _connect(settings)
            handle = client.get_schedule_handle(schedule_id(journey))
            try:
                if action == "pause":
                    await handle.pause(note="nudge schedules pause")
                elif action == "unpause":
                    await handle.unpause(note="nudge schedules unpause")
                else:
                    await handle.trigger()
            except Exception as exc:
                raise CliError(f"{schedule_id(journey)}: {exc}; is a worker started?") from None
            out.print(f"{schedule_id(journey)}: {action}d" if action != "trigger" else "triggered")

        run(go)

    command.__doc__ = {
        "pause": "Pause a recurring journey (kept across worker restarts).",
        "unpause": "Resume a paused recurring journey.",
        "trigger": "Fire a recurring journey now, once.",
    }[action]
    return command


for _action in ("pause", "unpause", "trigger"):
    schedules_app.command(_action)(_handle_command(_action))


@schedules_app.command("backfill")
def schedules_backfill(
    journey: Annotated[str, typer.Argument(help="the scheduled journey")],
    start: Annotated[str, typer.Option("--from", help='first instant, e.g. "2026-12-01 00:00"')],
    end: Annotated[str, typer.Option("--to", help="last instant (UTC unless an offset is given)")],
) -> None:
    """Run the firings a schedule would have had between --from and --to (e.g. after an
    outage longer than its catch-up window), each as its own broadcast."""
    from temporalio.client import ScheduleBackfill, ScheduleOverlapPolicy

    from engine.cli.ops import _connect
    from engine.temporal.schedules import schedule_id

    try:
        bounds = [datetime.fromisoformat(v) for v in (start, end)]
    except ValueError:
        raise fail('--from/--to take a date and time such as "2026-12-01 00:00"') from None
    first, last = (b if b.tzinfo else b.replace(tzinfo=UTC) for b in bounds)
    if last <= first:
        raise fail("--to must come after --from")
    settings, items = _recurring()
    if journey not in {i.journey for i in items}:
        raise fail(f"{journey!r} has no schedule; `nudge schedules list` shows them")

    async def go() -> None:
        client = await _connect(settings)
        handle = client.get_schedule_handle(schedule_id(journey))
        try:
            await handle.backfill(
                ScheduleBackfill(
                    start_at=first, end_at=last, overlap=ScheduleOverlapPolicy.ALLOW_ALL
                )
            )
        except Exception as exc:
            raise CliError(f"{schedule_id(journey)}: {exc}; is a worker started?") from None
        span = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
        out.print(f"{schedule_id(journey)}: backfilled {span}")

    run(go)
