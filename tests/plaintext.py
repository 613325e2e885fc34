"""Kept for files that import it from here: it lives in `tests.kit.plaintext`."""

from tests.kit.plaintext import found_anywhere, strings

__all__ = ["found_anywhere", "strings"]
