"""Kept for files that import the harness from here: it lives in `tests.kit` now."""

from tests.kit.stack import TEST_TEMPLATES, Stack, sent
from tests.kit.waiting import eventually

__all__ = ["TEST_TEMPLATES", "Stack", "eventually", "sent"]
