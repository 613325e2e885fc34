"""The `nudge` command."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from engine.cli import common
from engine.cli.common import CliError, current_settings, err, json_line, out, run

if TYPE_CHECKING:
    from engine.config.settings import Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Nudge: journeys over SMS and push."
)
users_app = typer.Typer(no_args_is_help=True, help="Inspect users.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys, payload keys, VAPID keys.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
webhooks_app = typer.Typer(no_args_is_help=True, help="Webhooks out: what was delivered.")
app.add_typer(webhooks_app, name="webhooks")


class KeyScopeOption(StrEnum):
    SOURCE = "source"
    READ = "read"
    ADMIN = "admin"


def settings() -> Settings:
    """The settings of an inspecting command: the environment, completed from the running
    `nudge dev` found in the state folder; a missing SQLite database is refused."""
    return common.database_settings()


def process_settings() -> Settings:
    """The settings of a process (`dev`, `api`, `worker`, `router`): the environment only."""
    from engine.config.settings import Settings

    return Settings()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"nudge {version('nudge')}")
        except PackageNotFoundError:
            out.print("nudge (not installed)")
        raise typer.Exit()


@app.callback()
def _options(
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="state folder of the `nudge dev` to use (default: NUDGE_STATE_DIR or .nudge)",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Nudge: journeys over SMS and push."""
    common.state_dir_option = state_dir


@app.command()
def dev(
    api_port: Annotated[int, typer.Option(help="port of the HTTP API")] = 8000,
    ui_port: Annotated[int, typer.Option(help="port of the Temporal Web UI")] = 8233,
    temporal_port: Annotated[int, typer.Option(help="port of the Temporal frontend")] = 7233,
    state_dir: Annotated[Path, typer.Option(help="where dev state lives")] = Path(".nudge"),
) -> None:
    """Everything in one process tree: Temporal dev server, SQLite, console channel, API, worker."""
    from engine.app.dev import DevError, run_dev
    from engine.cli.common import CliError

    async def go() -> None:
        try:
            await run_dev(
                process_settings(),
                api_port=api_port,
                ui_port=ui_port,
                temporal_port=temporal_port,
                state_dir=state_dir,
            )
        except DevError as exc:
            raise CliError(str(exc)) from None

    run(go)


@app.command()
def api() -> None:
    """The HTTP API and event router (production process; reads NUDGE_* variables)."""
    from engine.app.api import serve_api
    from engine.observability.logging import configure_logging

    configure_logging(json=process_settings().log_json)
    run(lambda: serve_api(process_settings()))


@app.command()
def router() -> None:
    """The event router on its own (production process; run several on one Postgres)."""
    from engine.app.router import run_router
    from engine.observability.logging import configure_logging

    configure_logging(json=process_settings().log_json)
    run(lambda: run_router(process_settings()))


class RoleOption(StrEnum):
    JOURNEYS = "journeys"
    TRANSACTIONAL = "transactional"


@app.command()
def worker(
    only: Annotated[
        RoleOption | None,
        typer.Option(
            help="serve only the journeys (and marketing SMS lanes) or only the transactional"
            " journeys (and transactional SMS lanes); default: both"
        ),
    ] = None,
) -> None:
    """The Temporal worker: journeys, delivery, providers (production process)."""
    from engine.app.worker import ROLES, Role, run_worker
    from engine.observability.logging import configure_logging

    roles = ROLES if only is None else {Role(only.value)}
    configure_logging(json=process_settings().log_json)
    run(lambda: run_worker(process_settings(), stop_on_signals=True, roles=roles))


@app.command()
def emit(
    event: Annotated[str, typer.Argument(help='event name, e.g. "Cart Updated"')],
    user: Annotated[str, typer.Option("--user", help="the product's user id")],
    prop: Annotated[
        list[str] | None, typer.Option("--prop", help="property k=v (repeatable)")
    ] = None,
    message_id: Annotated[str | None, typer.Option(help="messageId, for idempotency")] = None,
) -> None:
    """Store an event as if it came through the API; the router routes it."""
    from engine.context import Context
    from engine.store import outbox
    from schemas.events import TrackCall

    properties = _props(prop)

    async def go() -> None:
        async with Context.opened(settings()) as context:
            call = TrackCall(userId=user, event=event, properties=properties, messageId=message_id)
            async with context.sessions() as db:
                accepted = await outbox.accept(db, [call])
                await db.commit()
            note = " (duplicate, ignored)" if accepted.duplicates else ""
            out.print(f"stored {event!r} for {user} as {accepted.message_ids[0]}{note}")

    run(go)


@users_app.command("show")
def users_show(user_id: Annotated[str, typer.Argument(help="the product's user id")]) -> None:
    """A user's profile, devices, consent and journeys."""
    from engine.context import Context
    from engine.store import consent, devices, runs
    from engine.store.users import find_user

    async def go() -> None:
        async with Context.opened(settings()) as context, context.sessions() as db:
            user = await find_user(db, external_id=user_id)
            if user is None:
                raise CliError(f"no user {user_id!r} (see `nudge users search`)")
            table = Table(title=f"user {user_id}", show_header=False)
            for name in ("id", "timezone", "locale", "phone", "email"):
                table.add_row(name, str(getattr(user, name) or "-"))
            table.add_row("attributes", json.dumps(user.attributes or {}))
            for device in await devices.list_devices(db, user_id=user.id):
                state = "active" if device.active else f"inactive ({device.deactivated_reason})"
                table.add_row("device", f"{device.id} {device.platform} {state}")
            for channel in ("push", "webpush", "sms"):
                states = await consent.states(db, user_id=user.id, channel=channel)
                table.add_row(
                    f"consent {channel}", ", ".join(f"{t}={s}" for t, s in states.items())
                )
            for run_row in await runs.runs_of_user(db, user_id=user.id):
                table.add_row(
                    "journey", f"{run_row.journey} {run_row.status} {run_row.outcome or ''}"
                )
            out.print(table)

    run(go)


@app.command()
def timeline(
    user_id: Annotated[str, typer.Argument(help="the product's user id")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """The user's events, journey entries and exits, and messages, in time order."""
    from engine.context import Context
    from engine.store.timeline import timeline_rows

    async def go() -> None:
        async with Context.opened(settings()) as context:
            async with context.sessions() as db:
                rows = await timeline_rows(db, external_id=user_id)
            if rows is None:
                raise CliError(f"no user {user_id!r} (see `nudge users search`)")
            if as_json:
                for row in rows:
                    item = {
                        "at": row.at.isoformat(),
                        "kind": row.kind,
                        "what": row.what,
                        "status": str(row.status),
                        "detail": row.detail,
                        "ref": row.ref,
                    }
                    json_line(item)
                return
            table = Table(title=f"timeline of {user_id}")
            for column in ("time (UTC)", "kind", "what", "status", "detail"):
                table.add_column(column)
            for row in rows:
                table.add_row(
                    row.at.strftime("%Y-%m-%d %H:%M:%S"), row.kind, row.what, row.status, row.detail
                )
            out.print(table)

    run(go)


@app.command()
def journeys(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """The shipped journeys, with open runs per journey (and per step, from Temporal)."""
    from engine.app.journeys import shipped_journeys
    from engine.context import Context
    from engine.store.timeline import journey_counts

    async def go() -> None:
        async with Context.opened(settings()) as context:
            async with context.sessions() as db:
                counts = await journey_counts(db)
            steps = await _step_counts(context.settings)
            listed: list[dict[str, Any]] = []
            for name, cls in sorted(shipped_journeys().items()):
                spec = cls.__journey__
                opened, ended = counts.get(name, (0, 0))
                listed.append(
                    {
                        "journey": name,
                        "trigger": spec.trigger,
                        "exit_on": list(spec.exit_on),
                        "open_runs": opened,
                        "ended_runs": ended,
                        "open_by_step": dict(sorted(steps.get(name, {}).items())),
                    }
                )
            if as_json:
                for item in listed:
                    json_line(item)
                return
            table = Table(title="journeys")
            for column in (
                "journey",
                "trigger",
                "exit on",
                "open runs",
                "ended runs",
                "open by step",
            ):
                table.add_column(column)
            for item in listed:
                by_step = ", ".join(f"{s}={n}" for s, n in item["open_by_step"].items())
                table.add_row(
                    item["journey"],
                    item["trigger"] or "-",
                    ", ".join(item["exit_on"]) or "-",
                    str(item["open_runs"]),
                    str(item["ended_runs"]),
                    by_step or "-",
                )
            out.print(table)

    run(go)


async def _step_counts(config: Settings) -> dict[str, dict[str, int]]:
    """Open runs per journey and step from Temporal visibility; empty if unreachable."""
    from engine.store.timeline import step_counts

    try:
        return await asyncio.wait_for(step_counts(config), timeout=5)
    except Exception:
        return {}


@app.command()
def preview(
    template: Annotated[
        str, typer.Argument(help="JOURNEY/TEMPLATE, e.g. abandoned_cart/cart_last_call")
    ],
    user: Annotated[str, typer.Option("--user", help="the product's user id")],
    prop: Annotated[
        list[str] | None, typer.Option("--prop", help="entry event property k=v")
    ] = None,
) -> None:
    """Render a template for a user: every part, and the SMS encoding and part count."""
    from engine.app.journeys import template_store
    from engine.channels.sms.encoding import TooLong, encode_sms
    from engine.context import Context
    from engine.delivery.templates import LINKS, LinkBook, TemplateError
    from engine.store.users import find_user, profile_context

    journey, _, name = template.partition("/")
    if not name:
        err.print("[red]error:[/] give the template as JOURNEY/TEMPLATE")
        raise typer.Exit(2)
    properties = _props(prop)

    async def go() -> None:
        async with Context.opened(settings()) as context:
            async with context.sessions() as db:
                found = await find_user(db, external_id=user)
            if found is None:
                err.print(f"[red]error:[/] no user {user!r}")
                raise typer.Exit(1)
            # Tracked links render as real short links (codes are not stored), so the SMS
            # part count is the count of what would be sent.
            book = LinkBook(base=context.settings.link_base_url)
            try:
                content = template_store().render(
                    journey,
                    name,
                    locale=found.locale,
                    context={
                        "user": profile_context(found),
                        "event": {"name": "preview", "properties": properties},
                        "settings": {},
                        "variant": None,
                        LINKS: book,
                    },
                )
            except TemplateError as exc:
                err.print(f"[red]render_failed:[/] {exc}")
                raise typer.Exit(1) from None
            table = Table(title=f"{template} for {user} (locale {found.locale or 'default'})")
            table.add_column("part")
            table.add_column("text")
            for part in ("title", "body", "url", "sms"):
                value = getattr(content, part)
                if value:
                    table.add_row(part, value)
            if content.data:
                table.add_row("data", json.dumps(content.data, ensure_ascii=False))
            for _, url in book.links:
                table.add_row("tracked link", url)
            if content.sms:
                limit = context.config.channels.sms.max_parts
                try:
                    encoded = encode_sms(content.sms, max_parts=limit, reference=0)
                    table.add_row(
                        "sms encoding", f"{encoded.encoding}, {encoded.part_count} part(s)"
                    )
                except TooLong:
                    table.add_row("sms encoding", f"too_long (more than {limit} parts)")
            out.print(table)

    run(go)


def _props(items: list[str] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            err.print(f"[red]error:[/] --prop expects k=v, got {item!r}")
            raise typer.Exit(2)
        try:
            properties[key] = json.loads(value)
        except json.JSONDecodeError:
            properties[key] = value
    return properties


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="a label for the key")] = "default",
    scope: Annotated[
        KeyScopeOption,
        typer.Option(help="source: send data (safe in an app); read; admin: everything"),
    ] = KeyScopeOption.SOURCE,
    env: Annotated[str, typer.Option("--env", help="the environment it is for")] = "default",
) -> None:
    """Create an API key; it is shown once and stored hashed."""
    from engine.context import Context
    from engine.store import audit
    from engine.store.keys import create_key
    from schemas.common import KeyScope

    async def go() -> None:
        async with Context.opened(settings()) as context:
            async with context.sessions() as db:
                key = await create_key(db, name=name, scope=KeyScope(scope.value), environment=env)
                await audit.record(
                    db, actor="cli", action="key.create", target=name, detail={"scope": scope.value}
                )
                await db.commit()
            out.print(key)

    run(go)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Every API key (never its text): id, name, scope, environment, prefix, state."""
    from engine.context import Context
    from engine.store.keys import list_keys

    async def go() -> None:
        async with Context.opened(settings()) as context, context.sessions() as db:
            rows = await list_keys(db)
        listed = [
            {
                "id": k.id,
                "name": k.name,
                "scope": str(k.scope),
                "environment": k.environment,
                "prefix": k.prefix,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in rows
        ]
        if as_json:
            for item in listed:
                json_line(item)
            return
        table = Table(title="API keys")
        for column in ("id", "name", "scope", "environment", "prefix", "created", "state"):
            table.add_column(column)
        for item in listed:
            table.add_row(
                str(item["id"]),
                str(item["name"]),
                str(item["scope"]),
                str(item["environment"]),
                f"{item['prefix'] or '?'}...",
                str(item["created_at"])[:19],
                "revoked" if item["revoked_at"] else "active",
            )
        out.print(table)

    run(go)


@keys_app.command("revoke")
def keys_revoke(
    which: Annotated[str, typer.Argument(help="the key's id, name or prefix (see keys list)")],
) -> None:
    """Revoke keys; every API process refuses them from the next call on."""
    from engine.cli.common import CliError
    from engine.context import Context
    from engine.store import audit
    from engine.store.keys import revoke

    async def go() -> None:
        async with Context.opened(settings()) as context, context.sessions() as db:
            revoked = await revoke(db, which=which)
            if not revoked:
                raise CliError(f"no active key matches {which!r} (see `nudge keys list`)")
            for key in revoked:
                await audit.record(db, actor="cli", action="key.revoke", target=str(key.id))
            await db.commit()
        for key in revoked:
            out.print(f"revoked key {key.id} ({key.name}, {key.scope})")

    run(go)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    endpoint: Annotated[str | None, typer.Option(help="one [[webhooks]] name")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed")] = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Recent webhook deliveries: event, endpoint, state, attempts, the receiver's answer."""
    from engine.context import Context
    from engine.store import webhooks

    if status is not None and status not in (webhooks.PENDING, webhooks.DELIVERED, webhooks.FAILED):
        raise common.fail("--status is pending, delivered or failed", code=2)

    async def go() -> None:
        async with Context.opened(settings()) as context, context.sessions() as db:
            rows = await webhooks.deliveries(db, endpoint=endpoint, status=status, limit=limit)
        listed = [
            {
                "event_id": event.id,
                "kind": event.kind,
                "endpoint": delivery.endpoint,
                "status": delivery.status,
                "attempts": delivery.attempts,
                "last_status": delivery.last_status,
                "last_error": delivery.last_error,
                "created_at": delivery.created_at.isoformat(),
                "delivered_at": delivery.delivered_at.isoformat()
                if delivery.delivered_at
                else None,
            }
            for delivery, event in rows
        ]
        if as_json:
            for item in listed:
                json_line(item)
            return
        table = Table(title="webhook deliveries")
        for column in ("created (UTC)", "event", "kind", "endpoint", "state", "tries", "answer"):
            table.add_column(column)
        for item in listed:
            answer = item["last_status"] or item["last_error"] or "-"
            table.add_row(
                str(item["created_at"])[:19],
                str(item["event_id"]),
                str(item["kind"]),
                str(item["endpoint"]),
                str(item["status"]),
                str(item["attempts"]),
                str(answer),
            )
        out.print(table)

    run(go)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations to NUDGE_DATABASE_URL."""
    from engine.store.migrate import current_revision, upgrade
    from engine.store.session import make_engine

    async def go() -> None:
        current = current_settings()
        _ensure_sqlite_dir(current.database_url)
        engine = make_engine(current.database_url, schema=current.database_schema)
        try:
            await upgrade(engine)
            out.print(f"database at revision {await current_revision(engine)}")
        finally:
            await engine.dispose()

    run(go)


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite") and ":///" in url:
        path = Path(url.split(":///", 1)[1])
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _register_more() -> None:
    """Commands that live in their own modules (they import only what they need)."""
    from engine.cli import audience, people
    from engine.cli import ops as cli_ops
    from engine.cli.simulate import simulate
    from engine.cli.stats import stats

    app.add_typer(cli_ops.history_app, name="history")
    app.add_typer(cli_ops.temporal_app, name="temporal")
    app.command("replay")(cli_ops.replay)
    app.command("codec-server")(cli_ops.codec_server)
    app.command("simulate")(simulate)
    app.command("send-test")(people.send_test)
    users_app.command("list")(people.users_list)
    users_app.command("search")(people.users_search)
    users_app.command("delete")(people.users_delete)
    app.command("stats")(stats)
    app.add_typer(audience.segments_app, name="segments")
    app.add_typer(audience.schedules_app, name="schedules")
    app.command("broadcast")(audience.broadcast)
    keys_app.command("codec")(cli_ops.keys_codec)
    keys_app.command("vapid")(cli_ops.keys_vapid)


_register_more()


def main() -> None:
    """`nudge`: a usage error (unknown command, missing or bad argument) is one line on
    stderr naming the command's `--help`, with exit code 2, like every other error."""
    import sys

    from rich.markup import escape

    try:  # Typer >= 0.26 carries its own click; older ones use the click package
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - depends on the installed Typer
        from click import exceptions as click  # type: ignore[no-redef]

    try:
        code = app(standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        out.print(exc.ctx.get_help() if exc.ctx else "", markup=False)
        sys.exit(2)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "nudge"
        message = " ".join(exc.format_message().split())
        err.print(f"[red]error:[/] {escape(message)} (see `{where} --help`)")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        err.print(f"[red]error:[/] {escape(' '.join(exc.format_message().split()))}")
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except CliError as exc:  # raised before a command's `run` (e.g. by its settings)
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(exc.code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
