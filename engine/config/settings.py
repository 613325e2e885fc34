"""Process settings from `NUDGE_*` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a Nudge process reads from its environment.

    Secrets (`smpp` passwords, encryption keys) are referenced by name from `nudge.toml`
    and read from the environment; they never live in the repository.
    """

    model_config = SettingsConfigDict(env_prefix="NUDGE_", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///.nudge/nudge.db",
        description="postgresql+asyncpg://... or sqlite+aiosqlite:///path",
    )
    database_schema: str | None = Field(
        default=None, description="Postgres schema for Nudge's tables (default: the search path)"
    )
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "nudge"
    # Temporal Cloud / a TLS cluster: mTLS client certificate and key (PEM files), an
    # optional CA for the server, or an API key instead of a certificate.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_api_key: SecretStr | None = None
    config: Path | None = Field(default=None, description="path to nudge.toml")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Router: how often to look for unrouted events, in seconds (it is also woken on insert).
    router_poll_interval: float = 0.5
    # Run an event router inside `nudge api` (off when `nudge router` runs separately).
    api_router: bool = True
    # Public base URL of tracked links (`track_link`): short links are `{base}/c/{code}`,
    # answered by `nudge api`'s `GET /c/{code}`. Keep it short: SMS parts count it.
    link_base_url: str = "http://127.0.0.1:8000"
    # Worker identity recorded on journey_runs.version so stats can tell builds apart.
    build_id: str = "dev"
    # Codec keys: "kid:base64key,kid2:base64key"; the first one encrypts.
    encryption_keys: SecretStr | None = None
    # `nudge api`, `worker` and `router` refuse to start without encryption keys unless this
    # is set: payloads would reach Temporal's database in plain text.
    allow_plaintext: bool = False
    codec_token: SecretStr | None = None
    # Serve `/codec` without a token (only behind a private network: the Temporal Web UI
    # cannot send a static token). Off: without a token the endpoint is not mounted.
    codec_allow_anonymous: bool = False
    # Browser origins allowed to call the codec endpoint (the Temporal Web UI), comma list.
    codec_cors_origins: str = "http://localhost:8080,http://localhost:8233"
    # Where the worker serves /metrics (Nudge's and the Temporal SDK's), "host:port".
    worker_metrics_bind: str | None = None
    # Where the Temporal SDK serves its own Prometheus metrics, "host:port" (off when unset).
    temporal_metrics_bind: str | None = None

    def cors_origins(self) -> list[str]:
        """`codec_cors_origins` as a list, without trailing slashes."""
        raw = self.codec_cors_origins.split(",")
        return [origin.strip().rstrip("/") for origin in raw if origin.strip()]

    # The web console (`/ui`): the secret that signs its session cookies (set it, the same on
    # every API replica; without it each process makes one at start and sessions end on a
    # restart), and the Temporal Web UI its run links point at.
    console_secret: SecretStr | None = None
    temporal_ui_url: str | None = "http://127.0.0.1:8233"

    log_json: bool = True
    # OpenTelemetry tracing of workflows and activities (temporalio.contrib.opentelemetry),
    # exported by whatever tracer provider the process configures (e.g. OTEL_* variables
    # with opentelemetry-instrument). Off unless set.
    otel_tracing: bool = False
    # Salt of the hashes kept after GDPR erasure. Set it in production and keep it stable.
    erasure_salt: SecretStr | None = None

    def erasure_salt_text(self) -> str:
        """The configured salt, or a fixed development salt when none is set."""
        value = self.erasure_salt
        return value.get_secret_value() if value else "nudge-development-salt"


def require_encryption(settings: Settings) -> None:
    """Refuse (ConfigError) a production process without payload keys, unless plaintext was
    explicitly allowed."""
    from engine.config.nudge_toml import ConfigError

    if settings.allow_plaintext:
        return
    keys = settings.encryption_keys.get_secret_value() if settings.encryption_keys else ""
    if not keys.strip():
        raise ConfigError(
            "NUDGE_ENCRYPTION_KEYS is not set: payloads (events, profiles) would reach "
            "Temporal in plain text. Make a key with `nudge keys codec`, or set "
            "NUDGE_ALLOW_PLAINTEXT=true to run unencrypted on purpose"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
