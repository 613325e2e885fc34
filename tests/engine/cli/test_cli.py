"""The `nudge` command: schema checks, config errors, keys, emit, users, timeline, preview."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.store.migrate import head_revision

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SQLite database path; Temporal points at a closed port."""
    db = tmp_path / "nudge.db"
    monkeypatch.setenv("NUDGE_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.setenv("NUDGE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.delenv("NUDGE_CONFIG", raising=False)
    return db


def test_api_and_worker_refuse_an_out_of_date_schema(env: Path) -> None:
    for command in ("api", "worker"):
        result = runner.invoke(app, [command])
        assert result.exit_code == 1
        assert "nudge db upgrade" in result.output
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"revision {head_revision()}" in upgraded.output


def test_a_malformed_nudge_toml_is_refused_with_line_and_reason(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    config = tmp_path / "nudge.toml"
    config.write_text('[quiet_hours]\nstart = "21:00"\nend = "08:00"\naction = "later"\n')
    monkeypatch.setenv("NUDGE_CONFIG", str(config))
    result = runner.invoke(app, ["api"])
    assert result.exit_code == 1
    assert "line 4" in result.output and "quiet_hours.action" in result.output
    config.write_text("[[caps]]\nchannel = 'push'\nlimit = 1\nper = 'soon'\n")
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 1 and "line 4" in result.output and "per" in result.output
    config.write_text("timezone = 'UTC\n")
    assert runner.invoke(app, ["api"]).exit_code == 1


def test_keys_are_shown_once_and_stored_hashed(env: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["keys", "create", "--name", "ci"])
    assert result.exit_code == 0
    key = result.output.strip()
    assert key.startswith("nk_")
    with sqlite3.connect(env) as db:
        stored = db.execute("select key_hash from write_keys").fetchall()
    assert len(stored) == 1 and key not in stored[0][0]


def test_emit_users_show_timeline_and_preview(env: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    emitted = runner.invoke(
        app,
        ["emit", "Cart Updated", "--user", "ann", "--prop", "item_count=3", "--message-id", "e-1"],
    )
    assert emitted.exit_code == 0, emitted.output
    again = runner.invoke(app, ["emit", "Cart Updated", "--user", "ann", "--message-id", "e-1"])
    assert "duplicate" in again.output
    assert runner.invoke(app, ["emit", "X", "--user", "ann", "--prop", "novalue"]).exit_code == 2
    shown = runner.invoke(app, ["users", "show", "ann"])
    assert shown.exit_code == 0 and "consent sms" in shown.output
    assert runner.invoke(app, ["users", "show", "nobody"]).exit_code == 1
    timeline = runner.invoke(app, ["timeline", "ann"])
    assert timeline.exit_code == 0 and "Cart Updated" in timeline.output
    with sqlite3.connect(env) as db:
        db.execute("update users set phone = '+14155550199'")
    preview = runner.invoke(
        app, ["preview", "abandoned_cart/cart_last_call", "--user", "ann"], env={"COLUMNS": "200"}
    )
    assert preview.exit_code == 0, preview.output
    assert "gsm7, 1 part(s)" in preview.output
    # The SMS parts count the short link a send would carry, on the configured base URL.
    linked = runner.invoke(
        app, ["preview", "win_back/last_offer", "--user", "ann"], env={"COLUMNS": "300"}
    )
    assert linked.exit_code == 0, linked.output
    assert (
        "tracked link" in linked.output and "https://shop.example/offers/winback" in linked.output
    )
    assert "http://127.0.0.1:8000/c/" in linked.output and "gsm7, 1 part(s)" in linked.output
    far = runner.invoke(
        app,
        ["preview", "win_back/last_offer", "--user", "ann"],
        env={"COLUMNS": "300", "NUDGE_LINK_BASE_URL": "https://" + "l" * 120 + ".example"},
    )
    assert far.exit_code == 0 and "gsm7, 2 part(s)" in far.output
    missing = runner.invoke(app, ["preview", "abandoned_cart/nope", "--user", "ann"])
    assert missing.exit_code == 1 and "render_failed" in missing.output


def test_journeys_lists_shipped_journeys_even_without_temporal(env: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["journeys"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("abandoned_cart", "onboarding", "win_back"):
        assert name in result.output


def test_stats_shows_the_funnel_and_the_readout(env: Path) -> None:
    import asyncio

    from tests.engine.analytics.seed import seed
    from tests.kit.db import sessions

    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0

    async def rows() -> None:
        async with (
            sessions(f"sqlite+aiosqlite:///{env}") as maker,
            maker() as session,
            session.begin(),
        ):
            await seed(session)

    asyncio.run(rows())
    shown = runner.invoke(app, ["stats", "j", "--experiment", "exp"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "entered" in shown.output and "█" in shown.output  # a bar per step
    assert "no_consent=1" in shown.output and "control: a" in shown.output
    as_json = runner.invoke(app, ["stats", "j", "--json", "--since", "2026-05-01T12:00:00Z"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.output)
    assert body["stats"]["entered"] == 6 and body["stats"]["steps"][0]["reached"] == 5
    bad = runner.invoke(app, ["stats", "j", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output and "Traceback" not in bad.output
    unknown = runner.invoke(app, ["stats", "nope"])
    assert unknown.exit_code == 1 and "no runs of journey 'nope'" in unknown.output
