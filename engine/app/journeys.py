"""The shipped journeys: the ones `workflows/__init__.py` lists in `ALL`, by name, and
their templates (`workflows/templates/<journey>/`)."""

from __future__ import annotations

from pathlib import Path

from engine.config.nudge_toml import NudgeConfig, check_journey_overrides
from engine.config.settings import Settings
from engine.delivery.templates import TemplateStore
from engine.journey import Journeys, registry


def shipped_journeys() -> Journeys:
    """Every journey in `workflows.ALL` (imported here: only `engine.app` may)."""
    import workflows

    return registry(workflows.ALL)


def check_overrides(
    config: NudgeConfig, settings: Settings, journeys: Journeys | None = None
) -> None:
    """Refuse (`ConfigError`, with file and line) `[journeys.*]` overrides that name no
    shipped journey or a setting it does not have: checked when a process starts."""
    found = journeys if journeys is not None else shipped_journeys()
    check_journey_overrides(
        config,
        {name: cls.__journey__.settings for name, cls in found.items()},
        path=settings.config,
    )


def shipped_templates() -> Path:
    """The folder holding the shipped journeys' templates."""
    import workflows

    return Path(workflows.__file__).resolve().parent / "templates"


def template_store(*extra: Path) -> TemplateStore:
    """Templates from `extra` folders first (e.g. a test's), then the shipped ones."""
    return TemplateStore(*extra, shipped_templates())
