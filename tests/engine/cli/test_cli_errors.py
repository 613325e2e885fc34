"""The `nudge` command as a new user meets it: every wrong argument, unknown user, missing
database or unreachable server is one line and a non-zero exit, never a traceback; the
commands find a `nudge dev` through its state folder; `--help` loads no heavy module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main

CASES = [
    ["frobnicate"],
    ["timeline"],
    ["timeline", "nobody"],
    ["timeline", "ann", "--colour"],
    ["users", "show", "nobody"],
    ["users", "list", "--limit", "0"],
    ["users", "search", ""],
    ["users", "search", "nobody@example.com"],
    ["users", "delete", "nobody", "--yes"],
    ["emit", "Cart Updated"],
    ["emit", "Cart Updated", "--user", "ann", "--prop", "novalue"],
    ["preview", "no-slash", "--user", "ann"],
    ["preview", "abandoned_cart/cart_reminder", "--user", "nobody"],
    ["send-test", "no-slash", "--user", "ann"],
    ["send-test", "abandoned_cart/no_such_template", "--user", "ann"],
    ["send-test", "abandoned_cart/cart_reminder", "--user", "nobody"],
    ["send-test", "abandoned_cart/cart_reminder", "--user", "ann", "--channel", "fax"],
    ["keys", "create", "--scope", "root"],
    ["keys", "revoke", "no-such-key"],
    ["webhooks", "deliveries", "--status", "lost"],
    ["journeys", "--limit", "3"],
    ["stats"],
    ["stats", "abandoned_cart", "--since", "yesterday-ish"],
    ["replay"],
    ["replay", "--dir", "/no/such/folder"],
    ["history", "export", "journey/abandoned_cart/u_nobody"],
    ["temporal", "setup"],
    ["simulate", "no_such_journey", "--script", "/no/such/script.yaml"],
    ["--state-dir", "/no/such/state", "users", "list"],
]


def _run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, list[str]]:
    saved = sys.argv
    sys.argv = ["nudge", *args]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = saved
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    code = exited.value.code
    return code if isinstance(code, int) else 1, lines


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated SQLite database with one user, `ann`; Temporal at a closed port."""
    db = tmp_path / "nudge.db"
    monkeypatch.setenv("NUDGE_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.setenv("NUDGE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.delenv("NUDGE_CONFIG", raising=False)
    monkeypatch.delenv("NUDGE_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return db


def test_every_wrong_argument_is_one_line_and_a_non_zero_exit(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, ["db", "upgrade"])[0] == 0
    assert _run(capsys, ["emit", "Cart Updated", "--user", "ann"])[0] == 0
    wrong = []
    for args in CASES:
        code, lines = _run(capsys, args)
        if code == 0 or len(lines) != 1 or not lines[0].startswith("error"):
            wrong.append((args, code, lines[:4]))
    assert not wrong, wrong


def test_no_database_is_one_line_naming_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NUDGE_DATABASE_URL", raising=False)
    monkeypatch.delenv("NUDGE_STATE_DIR", raising=False)
    for args in (["users", "list"], ["timeline", "ann"], ["keys", "list"]):
        code, lines = _run(capsys, args)
        assert code == 1 and len(lines) == 1 and "nudge dev" in lines[0], lines
    assert not (tmp_path / ".nudge").exists()  # looking did not create an empty database
    monkeypatch.setenv("NUDGE_DATABASE_URL", "postgresql+asyncpg://nudge:secret@127.0.0.1:1/x")
    code, lines = _run(capsys, ["users", "list"])
    assert code == 1 and len(lines) == 1 and "cannot open the database" in lines[0]
    assert "secret" not in lines[0]


def test_commands_find_a_nudge_dev_by_its_state_folder(
    database: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from engine.config.instance import Instance, write_instance

    assert _run(capsys, ["db", "upgrade"])[0] == 0
    state = tmp_path / "elsewhere"
    state.mkdir()
    write_instance(
        state,
        Instance(
            database_url=f"sqlite+aiosqlite:///{database}",
            temporal_address="127.0.0.1:1",
            api_port=8123,
        ),
    )
    monkeypatch.delenv("NUDGE_DATABASE_URL")
    # Without the state folder the default one (.nudge) has nothing: refused.
    assert _run(capsys, ["users", "list"])[0] == 1
    code, _ = _run(capsys, ["--state-dir", str(state), "emit", "Signed Up", "--user", "kim"])
    assert code == 0
    monkeypatch.setenv("NUDGE_STATE_DIR", str(state))
    code, lines = _run(capsys, ["users", "search", "kim", "--json"])
    assert code == 0 and json.loads(lines[0])["user_id"] == "kim"
    code, lines = _run(capsys, ["timeline", "kim", "--json"])
    assert code == 0 and [json.loads(line)["what"] for line in lines] == ["Signed Up"]
    code, lines = _run(capsys, ["users", "delete", "kim", "--yes"])
    assert code == 0 and "erased user kim" in lines[0]
    assert _run(capsys, ["users", "search", "kim"])[0] == 1
    # What the environment sets wins over the state folder.
    monkeypatch.setenv("NUDGE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
    assert _run(capsys, ["users", "list"])[0] == 1


def test_version_and_a_light_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, ["--version"])
    assert code == 0 and lines[0].startswith("nudge ")
    # `nudge --help` imports neither Temporal's SDK nor the database layer nor the journeys:
    # what keeps it under a second.
    probe = (
        "import sys\n"
        "sys.argv = ['nudge', '--help']\n"
        "from engine.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('temporalio', 'sqlalchemy', 'engine.journey', 'workflows',"
        " 'fastapi') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert "HEAVY []" in done.stdout, done.stdout[-500:]


def test_overrides_for_an_unknown_journey_or_setting_are_refused_at_start(
    database: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(capsys, ["db", "upgrade"])[0] == 0
    config = tmp_path / "nudge.toml"
    config.write_text(
        'timezone = "UTC"\n\n[journeys.abandoned_cart]\nnudge_after = "2s"\n'
        'nudge_afterr = "2s"\n\n[journeys.abandoned_kart]\nnudge_after = "1m"\n'
    )
    monkeypatch.setenv("NUDGE_CONFIG", str(config))
    monkeypatch.setenv("NUDGE_ALLOW_PLAINTEXT", "true")
    for command in ("api", "worker", "router"):
        code, lines = _run(capsys, [command])
        assert code == 1, (command, lines)
        assert f"{config}: line 5: journeys.abandoned_cart.nudge_afterr" in lines[0]
        assert "no setting 'nudge_afterr'" in lines[0]
        assert f"{config}: line 7: journeys.abandoned_kart: no journey" in lines[1]
    config.write_text('[journeys.abandoned_cart]\nnudge_after = "soon"\n')
    code, lines = _run(capsys, ["worker"])
    assert code == 1 and "line 2: journeys.abandoned_cart.nudge_after" in lines[0]


def test_send_test_is_a_real_send_marked_test_outside_journeys(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    assert _run(capsys, ["db", "upgrade"])[0] == 0
    assert _run(capsys, ["emit", "Cart Updated", "--user", "ann"])[0] == 0
    code, lines = _run(capsys, ["send-test", "abandoned_cart/cart_reminder", "--user", "ann"])
    assert code == 1 and "no_address" in lines[-1]  # ann has no device yet
    with sqlite3.connect(database) as db:
        uid = db.execute("select id from users where external_id = 'ann'").fetchone()[0]
        db.execute(
            "insert into devices (id, user_id, platform, token, active, created_at, updated_at)"
            " values ('d_1', ?, 'ios', 'tok-ann', 1, '2026-12-01 00:00:00', '2026-12-01 00:00:00')",
            (uid,),
        )
    code, lines = _run(capsys, ["send-test", "abandoned_cart/cart_reminder", "--user", "ann"])
    assert code == 0 and lines[-1].endswith("push sent"), lines
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "select journey, template, status, test, transactional, device_id from messages"
            " where status = 'sent'"
        ).fetchall()
    assert rows == [(None, "cart_reminder", "sent", 1, 1, "d_1")]
