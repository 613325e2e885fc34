"""The shipped journeys: the ones `workflows/__init__.py` lists in `ALL`, by name, and
their templates (`workflows/templates/<journey>/`)."""

from __future__ import annotations

from pathlib import Path

from engine.delivery.templates import TemplateStore
from engine.journey import Journeys, registry


def shipped_journeys() -> Journeys:
    """Every journey in `workflows.ALL` (imported here: only `engine.app` may)."""
    import workflows

    return registry(workflows.ALL)


def shipped_templates() -> Path:
    """The folder holding the shipped journeys' templates."""
    import workflows

    return Path(workflows.__file__).resolve().parent / "templates"


def template_store(*extra: Path) -> TemplateStore:
    """Templates from `extra` folders first (e.g. a test's), then the shipped ones."""
    return TemplateStore(*extra, shipped_templates())
