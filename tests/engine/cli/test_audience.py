"""`nudge segments`, `nudge broadcast`, `nudge schedules`: what they show, and one-line
errors with a non-zero exit for what a person can fix."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.store import locations
from engine.store.users import ensure_user
from tests.kit.db import sessions

runner = CliRunner()

CONFIG = """
[segments]
pro = 'plan == "pro"'

[schedules.win_back]
cron = "0 9 * * MON"
audience = "pro"
local = true
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NUDGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'nudge.db'}")
    monkeypatch.setenv("NUDGE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    config = tmp_path / "nudge.toml"
    config.write_text(CONFIG)
    monkeypatch.setenv("NUDGE_CONFIG", str(config))
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    return config


def test_segments_list_and_show(env: Path) -> None:
    for user in ("ann", "bob"):
        emitted = runner.invoke(app, ["emit", "Signed Up", "--user", user])
        assert emitted.exit_code == 0, emitted.output
    listed = runner.invoke(app, ["segments", "list"])
    assert listed.exit_code == 0 and "pro" in listed.output and 'plan == "pro"' in listed.output
    shown = runner.invoke(app, ["segments", "show", "pro"])
    assert shown.exit_code == 0, shown.output
    assert "0 members now" in shown.output  # nobody has the attribute yet
    missing = runner.invoke(app, ["segments", "show", "nobody"])
    assert missing.exit_code == 1 and "no segment 'nobody'" in missing.output


def test_bad_input_is_one_line_and_a_non_zero_exit(env: Path) -> None:
    env.write_text("[segments]\nbad = 'plan == \"pro\" and'\n")
    listed = runner.invoke(app, ["segments", "list"])
    assert listed.exit_code == 1
    assert "line 2: segments.bad" in listed.output and "ends too soon" in listed.output
    assert "Traceback" not in listed.output
    env.write_text(CONFIG)
    for args, says in (
        (["broadcast", "win_back", "--segment", "nope"], "no segment 'nope'"),
        (["broadcast", "nope", "--segment", "pro"], "no journey 'nope'"),
        (["broadcast", "win_back", "--segment", "pro", "--at", "soon"], "not a date and time"),
        (["broadcast", "win_back", "--segment", "pro", "--local"], "--at: a local broadcast"),
        (["schedules", "pause", "onboarding"], "has no schedule"),
        (["schedules", "backfill", "win_back", "--from", "x", "--to", "y"], "take a date"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert says in result.output and "Traceback" not in result.output


def test_schedules_list_shows_next_firings_from_croniter(env: Path) -> None:
    listed = runner.invoke(app, ["schedules", "list", "--count", "2"])
    assert listed.exit_code == 0, listed.output
    assert "win_back" in listed.output and "09:00 in each user's zone" in listed.output
    # Monday 09:00 at UTC+14 is Sunday 19:00 UTC, the first zone's 09:00.
    assert (
        listed.output.count("next: Sun") == 2 and listed.output.count("19:00 UTC (Mon 09:00") == 2
    )


def test_segments_show_a_place_and_refuse_a_place_off_the_map(env: Path) -> None:
    env.write_text(CONFIG.replace("[segments]\n", NEAR_BERLIN))
    url = os.environ["NUDGE_DATABASE_URL"]
    asyncio.run(_locate(url, {"eva": (52.5163, 13.3777), "gus": (52.3906, 13.0645)}))
    runner.invoke(app, ["emit", "Signed Up", "--user", "kim"])  # never located
    shown = runner.invoke(app, ["segments", "show", "near_berlin"])
    assert shown.exit_code == 0, shown.output
    assert "1 member now" in shown.output and "eva" in shown.output
    assert "gus" not in shown.output and "kim" not in shown.output
    env.write_text("[segments]\nnowhere = 'near(95, 13.4, km=5)'\n")
    for args in (["segments", "list"], ["segments", "show", "nowhere"]):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 1, refused.output
        assert "segments.nowhere" in refused.output
        assert "latitude is a number from -90 to 90" in refused.output
        assert "Traceback" not in refused.output


NEAR_BERLIN = "[segments]\nnear_berlin = 'near(52.52, 13.405, km=5)'\n"


async def _locate(url: str, people: dict[str, tuple[float, float]]) -> None:
    """Last known locations, as the router stores them from location events."""
    at = datetime.now(UTC)
    async with sessions(url) as maker, maker() as db, db.begin():
        for name, (latitude, longitude) in people.items():
            user = await ensure_user(db, external_id=name)
            await db.flush()
            await locations.move(
                db,
                user_id=user.id,
                latitude=latitude,
                longitude=longitude,
                taken_at=at,
                geofences=[],
                at=at,
            )
