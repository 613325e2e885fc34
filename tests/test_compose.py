"""docker-compose.yml is valid Compose (checked with Compose v2's own `config`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = Path(sys.executable).parent / "docker-compose"


def config(env_file: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(COMPOSE),
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            *options,
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_config_passes_with_the_documented_env(tmp_path: Path) -> None:
    env = (ROOT / ".env.example").read_text()
    env = env.replace("NUDGE_POSTGRES_PASSWORD=\n", "NUDGE_POSTGRES_PASSWORD=example\n")
    env = env.replace("NUDGE_ENCRYPTION_KEYS=\n", "NUDGE_ENCRYPTION_KEYS=k1:" + "A" * 44 + "\n")
    (tmp_path / ".env").write_text(env)
    result = config(tmp_path / ".env")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in (
        "postgres",
        "temporal",
        "temporal-ui",
        "temporal-setup",
        "nudge-migrate",
        "nudge-api",
        "nudge-worker",
    ):
        assert name in services
    assert services["nudge-api"]["healthcheck"]
    assert services["nudge-api"]["depends_on"]["nudge-migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_compose_refuses_to_run_without_secrets(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("")
    result = config(tmp_path / ".env")
    assert "required variable" in result.stderr
    assert "NUDGE_POSTGRES_PASSWORD" in result.stderr or "NUDGE_ENCRYPTION_KEYS" in result.stderr


def test_the_monitoring_profile_adds_prometheus_and_grafana(tmp_path: Path) -> None:
    env = (ROOT / ".env.example").read_text()
    env = env.replace("NUDGE_POSTGRES_PASSWORD=\n", "NUDGE_POSTGRES_PASSWORD=example\n")
    env = env.replace("NUDGE_ENCRYPTION_KEYS=\n", "NUDGE_ENCRYPTION_KEYS=k1:" + "A" * 44 + "\n")
    (tmp_path / ".env").write_text(env)
    plain = yaml.safe_load(config(tmp_path / ".env").stdout)["services"]
    assert "prometheus" not in plain and "grafana" not in plain  # optional
    result = config(tmp_path / ".env", "--profile", "monitoring")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), volume["source"]
