"""What every `nudge` command shares: one Console pair, one error, one way to run.

A command that meets a situation a person can fix (no database, no server, an unknown user,
a bad file) raises `CliError` with one line saying what to do; `run` prints it in red on
stderr and exits with its code. Nothing a person can fix ends in a traceback.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from engine.config.settings import Settings

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

state_dir_option: Path | None = None
"""`nudge --state-dir DIR`: where to look for a running `nudge dev` (set by the callback)."""


def current_settings() -> Settings:
    """The `NUDGE_*` settings, completed from the `nudge dev` found in the state folder
    (`--state-dir`, `NUDGE_STATE_DIR` or `.nudge`): the environment wins where it is set."""
    import os

    from engine.config.instance import read_instance, settings_with_instance, state_dir_from
    from engine.config.settings import Settings

    folder = state_dir_from(state_dir_option)
    instance = read_instance(folder)
    if instance is None and (state_dir_option is not None or os.environ.get("NUDGE_STATE_DIR")):
        raise CliError(f"no running `nudge dev` recorded in {folder} (instance.json)")
    return settings_with_instance(Settings(), instance)


class CliError(Exception):
    """A failure the person can fix: `str()` says what happened and what to do."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def json_line(item: object) -> None:
    """One JSON object on one line of stdout (`--json` output: JSON lines)."""
    import json

    typer.echo(json.dumps(item, ensure_ascii=False, default=str))


def fail(message: str, *, code: int = 1) -> typer.Exit:
    """Print `message` as an error and return the `typer.Exit` to raise."""
    err.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


def database_settings() -> Settings:
    """`current_settings()` for a command that reads the database: an SQLite file that does
    not exist is refused at once (opening it would create an empty one)."""
    from sqlalchemy.engine import make_url

    settings = current_settings()
    url = make_url(settings.database_url)
    file = url.database if url.get_backend_name() == "sqlite" else None
    if file and file != ":memory:" and not Path(file).is_file():
        raise CliError(
            f"no database at {file}: start `nudge dev` here (or pass --state-dir DIR), "
            "set NUDGE_DATABASE_URL, or create it with `nudge db upgrade`"
        )
    return settings


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; errors a person can fix become one line and an exit code.

    A database that cannot be reached or opened is one of them: the line names the URL
    (without its password) and what to do.
    """
    from sqlalchemy.exc import DBAPIError, OperationalError

    from engine.config.nudge_toml import ConfigError
    from engine.store.migrate import SchemaOutOfDate

    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except CliError as exc:
        raise fail(str(exc), code=exc.code) from None
    except (ConfigError, SchemaOutOfDate) as exc:
        raise fail(str(exc)) from None
    except (OperationalError, DBAPIError, ConnectionError, socket.gaierror) as exc:
        raise fail(_no_database(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _no_database(exc: BaseException) -> str:
    from sqlalchemy.engine import make_url

    try:
        where = make_url(current_settings().database_url).render_as_string(hide_password=True)
    except Exception:  # the URL itself is unusable: say so without repeating it
        where = "NUDGE_DATABASE_URL"
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return (
        f"cannot open the database at {where}"
        + (f" ({reason})" if reason else "")
        + ": start `nudge dev` (or pass --state-dir), or set NUDGE_DATABASE_URL"
    )
