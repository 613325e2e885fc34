"""Operator commands: export and replay histories, set up a cluster, serve the codec, make keys.

Registered by `engine/cli.py` on the `nudge` app. Every command reads the `NUDGE_*`
settings, connects with `engine.temporal.client.connect`, and turns the errors an operator can fix
(server unreachable, workflow not found, a file that is not a history, missing keys) into
one red line on stderr and exit code 1. Nothing personal is printed unless asked for
(`history export --decode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from engine.cli.common import CliError, current_settings, err, out, run

# Temporal's SDK and the replayer load on first use, inside each command, so that
# `nudge --help` stays fast (see tests/engine/cli/test_cli_errors.py).
if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHistory
    from temporalio.converter import DataConverter
    from temporalio.runtime import Runtime

    from engine.config.settings import Settings
    from engine.journey import Journey
    from engine.temporal.replay import ReplayReport

history_app = typer.Typer(no_args_is_help=True, help="Journey run histories.")
temporal_app = typer.Typer(no_args_is_help=True, help="Set up a Temporal cluster for Nudge.")

"""Comma-separated Temporal UI origins allowed to call the codec server (until in Settings)."""
CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the Temporal frontend before giving up."""
PROGRESS_FROM = 20
"""Show a progress bar when replaying at least this many histories."""
_BATCH = 10

OpsError = CliError
"""A failure an operator can fix (the CLI's one error)."""


async def _connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    from temporalio.service import RPCError

    from engine.temporal.client import connect

    try:
        return await asyncio.wait_for(connect(settings, runtime=runtime), CONNECT_TIMEOUT)
    except (TimeoutError, RuntimeError, RPCError, OSError) as exc:
        raise OpsError(
            f"cannot reach Temporal at {settings.temporal_address} (namespace "
            f"{settings.temporal_namespace}): {exc or 'timed out'}; check NUDGE_TEMPORAL_ADDRESS"
        ) from None
    except ValueError as exc:  # bad NUDGE_ENCRYPTION_KEYS; the message names key ids only
        raise OpsError(f"NUDGE_ENCRYPTION_KEYS: {exc}") from None


def _quiet_runtime() -> Runtime:
    """A runtime without core logging: a failing replay is reported by us, once."""
    from temporalio.runtime import Runtime, TelemetryConfig

    return Runtime(telemetry=TelemetryConfig(logging=None))


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """Silence the SDK's Python-side warnings ("Failed activation...") while replaying."""
    logger = logging.getLogger("temporalio")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- nudge history export ----------------------------------------------------------------


@history_app.command("export")
def history_export(
    workflow_id: Annotated[str, typer.Argument(help="e.g. journey/abandoned_cart/u_...")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="file to write (default: stdout)")
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="a run (default: the latest)")] = None,
    decode: Annotated[
        bool, typer.Option(help="decrypt payloads (the file then holds personal data)")
    ] = False,
) -> None:
    """One run's history as JSON, shaped like `temporal workflow show --output json`."""

    from temporalio.service import RPCError, RPCStatusCode

    from engine.temporal import replay as replay_lib

    async def go() -> str:
        client = await _connect(current_settings())
        try:
            return await replay_lib.export_history(client, workflow_id, run_id, decode=decode)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                run = f" run {run_id}" if run_id else ""
                raise OpsError(f"no workflow {workflow_id!r}{run} in this namespace") from None
            raise OpsError(f"Temporal refused the export: {exc}") from None

    text = run(go)
    if decode:
        err.print("[yellow]note:[/] decoded payloads may hold personal data: never commit it")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")


# -- nudge replay ------------------------------------------------------------------------


def _unreadable(label: str, reason: str) -> ReplayReport:
    from engine.temporal.replay import ReplayReport

    return ReplayReport(
        workflow_id=label,
        run_id="",
        journey="?",
        ok=False,
        error=f"not a history file: {reason}",
        hint="give `nudge history export` / `temporal workflow show --output json` output",
    )


def read_history(path: Path) -> WorkflowHistory | ReplayReport:
    """A history file, or a failed report saying why it is not one."""
    from temporalio.api.enums.v1 import EventType

    from engine.temporal import replay as replay_lib

    try:
        history = replay_lib.load_history(path)
    except FileNotFoundError:
        return _unreadable(str(path), "no such file")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _unreadable(str(path), f"{type(exc).__name__}: {exc}")
    first = history.events[0] if history.events else None
    if first is None or first.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        return _unreadable(str(path), "it does not begin with WorkflowExecutionStarted")
    return history


async def _replay_batch(
    histories: list[WorkflowHistory],
    converter: DataConverter,
    runtime: Runtime,
    workflows: Sequence[type[Journey[Any]]],
) -> list[ReplayReport]:
    from engine.app.worker import workflow_runner
    from engine.temporal import replay as replay_lib

    return await replay_lib.replay_histories(
        histories,
        workflows=workflows,
        data_converter=converter,
        runtime=runtime,
        workflow_runner=workflow_runner(),
    )


async def replay_all(
    sources: Sequence[tuple[str, WorkflowHistory | ReplayReport]],
    *,
    data_converter: DataConverter,
    progress: bool = False,
    workflows: Sequence[type[Journey[Any]]] | None = None,
) -> list[tuple[str, ReplayReport]]:
    """Replay every history against `workflows` (default: every shipped journey).

    `sources`: (label, history or an already-failed report), e.g. from `read_history`.
    Returns (label, report) in input order; never raises for a failing history.
    `progress`: draw a rich progress bar on stderr.
    """
    from rich.progress import Progress
    from temporalio.client import WorkflowHistory

    from engine.app.journeys import shipped_journeys

    classes = list(workflows) if workflows is not None else list(shipped_journeys().values())
    runtime = _quiet_runtime()
    results: list[tuple[str, ReplayReport]] = []
    with (
        _quiet_sdk(),
        Progress(console=err, transient=True, disable=not progress) as bar,
    ):
        task = bar.add_task("replaying", total=len(sources))
        for start in range(0, len(sources), _BATCH):
            chunk = sources[start : start + _BATCH]
            playable = [s for _, s in chunk if isinstance(s, WorkflowHistory)]
            replayed = iter(await _replay_batch(playable, data_converter, runtime, classes))
            for label, source in chunk:
                report = next(replayed) if isinstance(source, WorkflowHistory) else source
                results.append((label, report))
            bar.advance(task, len(chunk))
    return results


async def replay_paths(
    paths: Sequence[Path],
    *,
    data_converter: DataConverter | None = None,
    progress: bool = False,
    workflows: Sequence[type[Journey[Any]]] | None = None,
) -> list[tuple[str, ReplayReport]]:
    """`nudge replay FILE...`: replay these files; unreadable ones are failed reports.

    `data_converter`: default the configured one (NUDGE_ENCRYPTION_KEYS).
    """
    from engine.temporal.client import data_converter as configured

    converter = data_converter or configured(current_settings())
    sources = [(str(path), read_history(path)) for path in paths]
    return await replay_all(
        sources, data_converter=converter, progress=progress, workflows=workflows
    )


def history_files(directory: Path) -> list[Path]:
    """Every `*.json` under `directory`, sorted (the corpus layout: `<journey>/<case>.json`)."""
    if not directory.is_dir():
        raise OpsError(f"{directory} is not a directory")
    files = sorted(directory.rglob("*.json"))
    if not files:
        raise OpsError(f"no *.json histories under {directory}")
    return files


def format_report(label: str, report: ReplayReport) -> str:
    """The plain-text lines `nudge replay` prints for one history."""
    if report.ok:
        return f"ok    {report.journey:16} {label}"
    where = f" at event {report.event_id}" if report.event_id is not None else ""
    lines = [f"FAIL  {report.journey:16} {label}{where}", f"      {report.error or ''}"]
    if report.hint:
        lines.append(f"      hint: {report.hint}")
    return "\n".join(lines)


def _print_reports(results: Sequence[tuple[str, ReplayReport]]) -> int:
    failed = 0
    for label, report in results:
        failed += not report.ok
        style = "green" if report.ok else "red"
        text = escape(format_report(label, report))
        out.print(f"[{style}]{text[:4]}[/]{text[4:]}")
    out.print(f"{len(results)} replayed, {failed} failed")
    return failed


def replay(
    files: Annotated[list[Path] | None, typer.Argument(help="history JSON files")] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="replay every *.json under this directory")
    ] = None,
    journey: Annotated[
        str | None, typer.Option(help="replay recent runs of this journey from the server")
    ] = None,
    last: Annotated[int, typer.Option(help="with --journey: how many recent runs")] = 20,
) -> None:
    """Replay histories against the current code; exit 1 if any would not replay."""
    chosen = sum(x is not None and x != [] for x in (files, directory, journey))
    if chosen != 1:
        err.print("[red]error:[/] give FILE..., --dir DIR, or --journey NAME [--last N]")
        raise typer.Exit(2)

    from temporalio.service import RPCError

    from engine.temporal import replay as replay_lib

    async def go() -> list[tuple[str, ReplayReport]]:
        settings = current_settings()
        if journey is not None:
            client = await _connect(settings, runtime=_quiet_runtime())
            try:
                histories = await replay_lib.fetch_recent_histories(
                    client, journey=journey, last=last
                )
            except ValueError as exc:
                raise OpsError(str(exc)) from None
            except RPCError as exc:
                raise OpsError(f"cannot list runs of {journey!r}: {exc}") from None
            if not histories:
                raise OpsError(f"no runs of {journey!r} in the visibility store")
            sources: list[tuple[str, WorkflowHistory | ReplayReport]] = [
                (f"{h.workflow_id} ({h.run_id})", h) for h in histories
            ]
            return await replay_all(
                sources,
                data_converter=client.data_converter,
                progress=len(sources) >= PROGRESS_FROM,
            )
        paths = history_files(directory) if directory is not None else list(files or [])
        try:
            from engine.temporal.client import data_converter

            converter = data_converter(settings)
        except ValueError as exc:
            raise OpsError(f"NUDGE_ENCRYPTION_KEYS: {exc}") from None
        return await replay_paths(
            paths, data_converter=converter, progress=len(paths) >= PROGRESS_FROM
        )

    if _print_reports(run(go)):
        raise typer.Exit(1)


# -- nudge temporal setup ----------------------------------------------------------------


async def setup_search_attributes(client: Client) -> tuple[list[str], list[str]]:
    """Register Nudge's search attributes (Keyword) on the client's namespace.

    Idempotent: returns (added, already present). Raises `OpsError` when a name exists with
    another type (it cannot be changed in place).
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )
    from temporalio.service import RPCError, RPCStatusCode

    from engine.temporal.client import SEARCH_ATTRIBUTES

    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    listing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    present = dict(listing.custom_attributes)
    wrong = [
        f"{key.name} ({IndexedValueType.Name(present[key.name])})"
        for key in SEARCH_ATTRIBUTES
        if key.name in present and present[key.name] != keyword
    ]
    if wrong:
        raise OpsError(f"search attributes exist with another type: {', '.join(wrong)}")
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in present]
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=client.namespace,
                    search_attributes=dict.fromkeys(missing, keyword),
                )
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.ALREADY_EXISTS:  # another setup won the race
                raise
    return missing, [key.name for key in SEARCH_ATTRIBUTES if key.name not in missing]


@temporal_app.command("setup")
def temporal_setup() -> None:
    """Register the search attributes NudgeJourney, NudgeUserId, NudgeStep (idempotent)."""

    from temporalio.service import RPCError

    async def go() -> tuple[list[str], list[str]]:
        settings = current_settings()
        client = await _connect(settings)
        try:
            return await setup_search_attributes(client)
        except RPCError as exc:
            raise OpsError(
                f"cannot register search attributes on namespace {client.namespace}: {exc}"
                " (on Temporal Cloud, add them in the Cloud UI or with tcld)"
            ) from None

    added, present = run(go)
    for name in added:
        out.print(f"added search attribute {name} (Keyword)")
    for name in present:
        out.print(f"search attribute {name} (Keyword) already registered")


# -- nudge codec-server ------------------------------------------------------------------


def codec_server(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8081,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Serve the remote codec endpoint for the Temporal Web UI / CLI (`--codec-endpoint`).

    Keys from NUDGE_ENCRYPTION_KEYS, bearer token from NUDGE_CODEC_TOKEN, allowed UI
    origins from NUDGE_CODEC_CORS_ORIGINS (comma-separated).
    """
    import uvicorn

    from engine.temporal.codec import codec_from_secret
    from triggers.codec_server import create_codec_app

    settings = current_settings()
    try:
        codec = codec_from_secret(settings.encryption_keys)
    except ValueError as exc:
        err.print(f"[red]error:[/] NUDGE_ENCRYPTION_KEYS: {escape(str(exc))}")
        raise typer.Exit(1) from None
    if codec is None:
        err.print("[red]error:[/] NUDGE_ENCRYPTION_KEYS is not set: there is nothing to decode")
        raise typer.Exit(1)
    token = settings.codec_token.get_secret_value() if settings.codec_token else None
    if token is None:
        err.print(
            "[yellow]warning:[/] NUDGE_CODEC_TOKEN is not set: anyone who can reach "
            "this port can decrypt payloads"
        )
    origins = settings.cors_origins()
    app = create_codec_app(codec, token=token, cors_origins=origins)
    err.print(
        f"codec server on http://{host}:{port} (keys {', '.join(codec.key_ids)}; "
        f"UI origins: {', '.join(origins) or 'none'})"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


# -- nudge keys codec / vapid --------------------------------------------------------------


def keys_codec(
    key_id: Annotated[str | None, typer.Option("--id", help="key id (default: kYYYYMMDD)")] = None,
) -> None:
    """Print a new AES-256 codec key as `kid:base64key`, ready for NUDGE_ENCRYPTION_KEYS."""
    from engine.temporal.codec import generate_key

    kid = key_id or datetime.now(UTC).strftime("k%Y%m%d")
    typer.echo(f"{kid}:{generate_key()}")
    err.print(
        "put it first in NUDGE_ENCRYPTION_KEYS; keep older keys after it until no "
        "retained history uses them"
    )


def keys_vapid() -> None:
    """Print a new VAPID key pair: the private key (PEM) then the public key (base64url)."""
    from engine.channels.push.webpush import generate_vapid_keypair

    private_pem, public = generate_vapid_keypair()
    typer.echo(private_pem, nl=not private_pem.endswith("\n"))
    typer.echo(public)
    err.print(
        "private key (PEM): store it in the file or variable named by "
        "\\[channels.push.webpush] vapid_private_key_file / vapid_private_key_env"
    )
    err.print("public key (last line): the browser's applicationServerKey")
