"""Looking for personal data in exported histories: as text, or inside base64 payloads."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import Any


def strings(node: Any) -> Iterator[str]:
    """Every key and string value of a JSON document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def found_anywhere(document: str, needle: str) -> bool:
    """`needle` in the JSON text, or in the bytes of any base64 field (payload data)."""
    if needle in document:
        return True
    for value in strings(json.loads(document)):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if needle.encode() in raw:
            return True
    return False
