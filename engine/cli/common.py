"""What every `nudge` command shares: one Console pair, one error, one way to run.

A command that meets a situation a person can fix (no database, no server, an unknown user,
a bad file) raises `CliError` with one line saying what to do; `run` prints it in red on
stderr and exits with its code. Nothing a person can fix ends in a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


class CliError(Exception):
    """A failure the person can fix: `str()` says what happened and what to do."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, *, code: int = 1) -> typer.Exit:
    """Print `message` as an error and return the `typer.Exit` to raise."""
    err.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; errors a person can fix become one line and an exit code."""
    from engine.config.nudge_toml import ConfigError
    from engine.store.migrate import SchemaOutOfDate

    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except CliError as exc:
        raise fail(str(exc), code=exc.code) from None
    except (ConfigError, SchemaOutOfDate) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
