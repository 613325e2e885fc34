"""engine.testing.kit (the journey test kit) and `nudge simulate`, on real dev servers.

`journey_env` is the kit's own fixture (enabled in tests/conftest.py, on the session's dev
server, which has time skipping on). Instants are compared with a minute's tolerance: the
kit's and the run's clocks both follow the wall clock between steps, and the steps here are
hours long, so a minute tells a correct clock from a wrong one on any machine.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
import typer
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from engine.cli.simulate import simulate
from engine.temporal import timeskip
from engine.temporal.client import DEV_SERVER_STARTUP, temporal_binary
from engine.testing import JourneyEnv, TimeSkippingUnavailable
from engine.testing.pytest_plugin import EnvFactory
from workflows import AbandonedCart

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CLOSE = timedelta(minutes=1)


def utc_hour(days: int, hour: int) -> datetime:
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime.combine(day, time(hour), tzinfo=UTC)


async def test_an_event_lands_at_its_virtual_moment(journey_env: EnvFactory) -> None:
    start = utc_hour(3, 12)
    env = await journey_env(AbandonedCart, start_at=start)
    assert abs(env.now() - start) < CLOSE
    ann = await env.user("ann")
    await env.emit(ann, "Cart Updated")
    await env.advance(minutes=30)
    run = await env.run(ann, "abandoned_cart")
    assert run.state is not None and run.state.step == "wait:Checkout Started"
    clock = await timeskip.current_time(env.client, run.workflow_id)
    assert abs(clock - env.now()) < CLOSE, "run and kit clocks must agree"
    await env.emit(ann, "Checkout Started")  # at +30 min: inside the 1 h wait
    run = await env.run(ann, "abandoned_cart")
    assert run.outcome == "checked_out"
    assert run.started_at is not None and abs(run.started_at - start) < CLOSE
    assert await env.messages(ann) == []


async def test_runs_started_later_begin_at_virtual_now_and_reentry_uses_it(
    journey_env: EnvFactory,
) -> None:
    start = utc_hour(10, 9)  # ten days ahead: wall-clock stamps would break the 7-day re-entry
    env = await journey_env(AbandonedCart, start_at=start)
    ann = await env.user("ann", traits={"first_name": "Ann"})
    bob = await env.user("bob", consent={"push": "unsubscribed", "sms": "subscribed"})
    await env.emit(ann, "Cart Updated")
    await env.advance(days=2)
    await env.emit(bob, "Cart Updated")  # starts a run 2 days after the kit started
    await env.emit(ann, "Cart Updated")  # 2 days after ann's entry: re-entry (7 d) refuses
    await env.advance(hours=2)
    assert len(await env.runs(ann)) == 1
    [reminder] = [m for m in await env.messages(bob) if m.template == "cart_reminder"]
    assert (reminder.status, reminder.reason) == ("suppressed", "no_consent")
    assert abs(reminder.at - (start + timedelta(days=2, hours=1))) < CLOSE
    sent = await env.sent(ann)
    assert [m.template for m in sent] == ["cart_reminder", "cart_last_call"]
    assert sent[0].content is not None and sent[0].content.title == "Still thinking it over, Ann?"


async def test_a_server_without_time_skipping_is_refused_by_name() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_startup_timeout=DEV_SERVER_STARTUP,
        data_converter=pydantic_data_converter,
    )
    async with env:
        with pytest.raises(TimeSkippingUnavailable, match=timeskip.DYNAMIC_CONFIG_KEY):
            async with JourneyEnv.start(journeys=[AbandonedCart], client=env.client):
                pass


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(simulate)
    return app


def test_simulate_the_tokyo_example() -> None:
    result = CliRunner().invoke(
        cli(),
        [
            "abandoned_cart",
            "--user-zone",
            "Asia/Tokyo",
            "--script",
            str(EXAMPLES / "abandoned_cart_tokyo.yaml"),
            "--config",
            str(EXAMPLES / "nudge.toml"),
        ],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    assert "quiet_hours until" in result.output
    assert "FAILED" not in result.output and "all good" in result.output


def test_simulate_the_inactivity_example() -> None:
    """win_back's `Inactive` trigger: not entered on day 14 after a return on day 13, entered
    on day 27 by the sweep's `User Inactive`."""
    script = str(EXAMPLES / "win_back_inactive.yaml")
    result = CliRunner().invoke(cli(), ["win_back", "--script", script], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "User Inactive" in result.output and "+648h00" in result.output
    assert "FAILED" not in result.output and "all good" in result.output


def test_simulate_exits_non_zero_when_an_expectation_fails(tmp_path: Path) -> None:
    (tmp_path / "nudge.toml").write_text(
        '[[caps]]\nchannel = "push"\nlimit = 1\nper = "4h"\n\n[journeys.onboarding]\nday = "1h"\n'
    )
    (tmp_path / "script.toml").write_text(
        'until = "+3h"\n[user]\ntraits = {first_name = "Ann"}\n\n'
        '[[steps]]\nat = "+0h"\nemit = "Signed Up"\n\n'
        '[[steps]]\nat = "+2h"\nexpect = [\n'
        '  {suppressed = "complete_profile", reason = "capped"},\n'
        '  {sent = "welcome", local_time = "03:07"},\n]\n'
    )
    result = CliRunner().invoke(
        cli(),
        [
            "onboarding",
            "--start",
            "2:00",
            "--script",
            str(tmp_path / "script.toml"),
            "--config",
            str(tmp_path / "nudge.toml"),
        ],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 1, result.output
    assert result.output.count("FAILED") == 1
    assert "1 expectation(s) failed" in result.output


def test_simulate_refuses_a_bad_script(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text('- at: "+1h"\n  expect: {sent: x, outcome: y}\n')
    result = CliRunner().invoke(cli(), ["abandoned_cart", "--script", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2
    assert "exactly one of" in result.output
