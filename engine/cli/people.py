"""`nudge users list|search|delete` and `nudge send-test`: people, and a message to one.

Registered on the `nudge` app by `engine/cli/main.py`. Each command imports what it needs
when it runs (so `nudge --help` stays fast) and answers what a person can fix (no user, a
bad template name, no database) with one line and a non-zero exit.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from engine.cli.common import CliError, database_settings, fail, json_line, out, run


def _user_item(user: Any) -> dict[str, Any]:
    return {
        "user_id": user.external_id,
        "uid": user.id,
        "email": user.email,
        "phone": user.phone,
        "timezone": user.timezone,
        "locale": user.locale,
        "created_at": user.created_at.isoformat(),
    }


def _print_users(users: list[Any], *, title: str, as_json: bool) -> None:
    items = [_user_item(user) for user in users]
    if as_json:
        for item in items:
            json_line(item)
        return
    table = Table(title=title)
    for column in ("user", "email", "phone", "zone", "created (UTC)"):
        table.add_column(column)
    for item in items:
        table.add_row(
            str(item["user_id"]),
            item["email"] or "-",
            item["phone"] or "-",
            item["timezone"] or "-",
            item["created_at"][:19],
        )
    out.print(table)


def users_list(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="how many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """The newest users (merged and erased ones left out)."""
    from engine.context import Context
    from engine.store.users import recent_users

    async def go() -> None:
        async with Context.opened(database_settings()) as context, context.sessions() as db:
            found = await recent_users(db, limit=limit)
        _print_users(found, title="users", as_json=as_json)

    run(go)


def users_search(
    query: Annotated[str, typer.Argument(help="a user id, email or phone (exact match)")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """Users whose id, email or phone is exactly QUERY (a phone in any format); exit 1 if none."""
    from engine.context import Context
    from engine.store.users import search_users

    if not query.strip():
        raise fail("give a user id, email or phone to search for", code=2)

    async def go() -> None:
        async with Context.opened(database_settings()) as context, context.sessions() as db:
            found = await search_users(db, query=query)
        if not found:
            raise CliError(f"no user has the id, email or phone {query!r}")
        _print_users(found, title=f"users matching {query}", as_json=as_json)

    run(go)


def users_delete(
    user_id: Annotated[str, typer.Argument(help="the product's user id")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Erase a user (GDPR): profile, addresses, event payloads and message bodies go; the
    consent log stays, tied to a salted hash; their open runs are ended."""
    from engine.context import Context
    from engine.store import audit, gdpr, runs
    from engine.store.users import find_user

    async def go() -> tuple[int, int]:
        settings = database_settings()
        async with Context.opened(settings) as context, context.sessions() as db:
            user = await find_user(db, external_id=user_id)
            if user is None:
                raise CliError(f"no user {user_id!r} (see `nudge users search`)")
            if not yes and not typer.confirm(f"erase user {user_id} for good?"):
                raise CliError("nothing erased", code=1)
            open_runs = [r.workflow_id for r in await runs.open_runs(db, user_id=user.id)]
            await gdpr.erase(db, user=user, salt=settings.erasure_salt_text())
            await audit.record(db, actor="cli", action="user.erase", target=user.id)
            await db.commit()
        ended = await gdpr.end_runs(lambda: _temporal(settings), open_runs)
        return ended, len(open_runs)

    ended, opened = run(go)
    note = (
        f"; {opened - ended} open run(s) could not be ended in Temporal" if ended < opened else ""
    )
    out.print(f"erased user {user_id} ({ended} run(s) ended{note})")


async def _temporal(settings: Any) -> Any:
    from engine.temporal.client import connect

    return await connect(settings)


def send_test(
    template: Annotated[
        str, typer.Argument(help="JOURNEY/TEMPLATE, e.g. abandoned_cart/cart_reminder")
    ],
    user: Annotated[str, typer.Option("--user", help="the product's user id")],
    channel: Annotated[
        str, typer.Option(help="push (the user's app devices), webpush or sms")
    ] = "push",
) -> None:
    """Send a template to a user now, marked as a test: in no journey, exempt from caps and
    quiet hours (a transactional send), through the configured providers."""
    from engine.app.journeys import template_store
    from engine.app.providers import build_providers
    from engine.context import Context
    from engine.delivery.deliverer import Deliverer, DeliveryRetry
    from engine.delivery.templates import TemplateError
    from engine.store.messages import rows_for_send
    from engine.store.users import find_user
    from schemas.common import Channel
    from schemas.journeys import DeliverRequest

    journey, _, name = template.partition("/")
    if not journey or not name:
        raise fail("give the template as JOURNEY/TEMPLATE", code=2)
    try:
        chosen = Channel(channel)
    except ValueError:
        raise fail("--channel is push, webpush or sms", code=2) from None
    templates = template_store()
    try:
        templates.find(journey, name, None)
    except TemplateError as exc:
        raise fail(str(exc), code=2) from None

    async def go() -> tuple[list[Any], Any]:
        async with Context.opened(database_settings()) as context:
            async with context.sessions() as db:
                found = await find_user(db, external_id=user)
            if found is None:
                raise CliError(f"no user {user!r} (see `nudge users search`)")
            providers = build_providers(context)
            await providers.start()
            try:
                deliverer = Deliverer(
                    sessions=context.sessions,
                    config=context.config,
                    providers=providers,
                    templates=templates,
                )
                key = f"test/{uuid.uuid4().hex}"
                request = DeliverRequest(
                    idempotency_key=key,
                    user_id=found.id,
                    journey=journey,
                    workflow_id=key,
                    step="send-test",
                    template=name,
                    channel=chosen,
                    transactional=True,
                    test=True,
                )
                try:
                    outcome = await deliverer.deliver(request)
                except DeliveryRetry as exc:
                    raise CliError(f"the provider asked to retry later ({exc.code})") from None
            finally:
                await providers.close()
            async with context.sessions() as db:
                return await rows_for_send(db, workflow_id=key, step="send-test", key=key), outcome

    rows, outcome = run(go)
    for row in rows:
        detail = f" ({row.reason})" if row.reason else ""
        out.print(f"{row.id} {row.channel} {row.status}{detail}")
    result = outcome.result
    if result is None or result.status != "sent":
        reason = result.reason if result is not None else "deferred"
        raise fail(f"test send not sent: {reason}")
