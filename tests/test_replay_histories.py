"""The replay corpus in CI: every recorded history must replay against the current code.

A failure here means a journey changed behaviour without `workflow.patched(...)`: runs
started before the change would break on the new workers. See tests/histories/README.md.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import typer
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from engine.app.journeys import shipped_journeys
from engine.cli import ops as cli_ops
from engine.temporal.client import DEV_SERVER_STARTUP, SEARCH_ATTRIBUTES, temporal_binary
from engine.temporal.replay import HINT_NONDETERMINISM
from tests.histories._changed_cart import UnpatchedCart
from workflows.abandoned_cart import PATCH_LAST_CALL_MIN_VALUE

HISTORIES = Path(__file__).parent / "histories"


async def test_every_recorded_history_replays() -> None:
    """`nudge replay --dir tests/histories` semantics: every file replays OK."""
    results = await cli_ops.replay_paths(
        cli_ops.history_files(HISTORIES), data_converter=pydantic_data_converter
    )
    failures = [cli_ops.format_report(label, r) for label, r in results if not r.ok]
    assert not failures, "\n".join(failures)
    assert len(results) >= 10


def test_corpus_covers_every_shipped_journey() -> None:
    recorded = {path.parent.name for path in HISTORIES.rglob("*.json")}
    assert set(shipped_journeys()) <= recorded


def _patch_ids(path: Path) -> set[str]:
    """The `workflow.patched` ids recorded in a history (core patch markers)."""
    found: set[str] = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if not marker or marker.get("markerName") != "core_patch":
            continue
        for payload in marker["details"]["patch-data"]["payloads"]:
            found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def test_versioning_demo_has_old_and_new_histories() -> None:
    """Pre-patch abandoned-cart runs are in the corpus beside runs of the patched code."""
    cart = HISTORIES / "abandoned_cart"
    for name in ("reminded", "exited_mid_delay", "checked_out"):
        assert _patch_ids(cart / f"{name}.json") == set(), name
    for name in ("reminded_v2", "push_only_v2"):
        assert _patch_ids(cart / f"{name}.json") == {PATCH_LAST_CALL_MIN_VALUE}, name


async def test_a_step_added_without_a_patch_fails_replay_readably() -> None:
    cart = HISTORIES / "abandoned_cart"
    results = dict(
        await cli_ops.replay_paths(
            [cart / "reminded.json", cart / "checked_out.json"],
            data_converter=pydantic_data_converter,
            workflows=[UnpatchedCart],
        )
    )
    reminded = results[str(cart / "reminded.json")]
    assert not reminded.ok
    assert reminded.journey == "abandoned_cart"
    # The new timer meets the reminder's ActivityTaskScheduled (event 14) in the history.
    assert reminded.event_id == 14
    assert reminded.hint == HINT_NONDETERMINISM
    text = cli_ops.format_report(str(cart / "reminded.json"), reminded)
    assert "FAIL  abandoned_cart" in text and "at event 14" in text
    assert "Nondeterminism" in text and "workflow.patched" in text
    # A branch the change does not touch still replays.
    assert results[str(cart / "checked_out.json")].ok


# -- the commands, as an operator runs them ----------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("replay")(cli_ops.replay)
    app.add_typer(cli_ops.history_app, name="history")
    app.add_typer(cli_ops.temporal_app, name="temporal")
    return app


def test_replay_command_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"NUDGE_ENCRYPTION_KEYS": ""}
    ok = runner.invoke(_app(), ["replay", "--dir", str(HISTORIES)], env=env)
    assert ok.exit_code == 0, ok.output
    assert "0 failed" in ok.output

    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": 1}')
    failed = runner.invoke(
        _app(),
        [
            "replay",
            str(bad),
            str(tmp_path / "missing.json"),
            str(HISTORIES / "onboarding" / "full.json"),
        ],
        env=env,
    )
    assert failed.exit_code == 1
    assert "not a history file" in failed.output and "no such file" in failed.output
    assert "3 replayed, 2 failed" in failed.output

    both = runner.invoke(_app(), ["replay", str(bad), "--dir", str(tmp_path)], env=env)
    assert both.exit_code == 2


@pytest.fixture(scope="module")
async def bare_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server WITHOUT Nudge's search attributes, like a fresh cluster namespace."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_startup_timeout=DEV_SERVER_STARTUP,
        dev_server_log_level="error",
    )
    async with env:
        yield env


async def _custom_attributes(client: Client) -> dict[str, int]:
    listing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return dict(listing.custom_attributes)


async def test_temporal_setup_registers_search_attributes_once(
    bare_server: WorkflowEnvironment,
) -> None:
    client = bare_server.client
    names = [key.name for key in SEARCH_ATTRIBUTES]
    assert not set(names) & set(await _custom_attributes(client))
    added, present = await cli_ops.setup_search_attributes(client)
    assert (added, present) == (names, [])
    attributes = await _custom_attributes(client)
    for name in names:
        assert attributes[name] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    # Idempotent: a second run changes nothing and says so.
    assert await cli_ops.setup_search_attributes(client) == ([], names)


def test_commands_fail_clearly_when_temporal_is_unreachable() -> None:
    runner = CliRunner()
    env = {"NUDGE_TEMPORAL_ADDRESS": "127.0.0.1:9", "NUDGE_ENCRYPTION_KEYS": ""}
    for args in (
        ["temporal", "setup"],
        ["history", "export", "journey/x/u_1"],
        ["replay", "--journey", "abandoned_cart"],
    ):
        result = runner.invoke(_app(), args, env=env)
        assert result.exit_code == 1, (args, result.output)
        assert "cannot reach Temporal at 127.0.0.1:9" in result.output, args
