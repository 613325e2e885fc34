"""Field types shared by every body the API reads, documented exactly as they are checked.

What storage cannot hold is refused with a 4xx naming the field, and the OpenAPI document
says so (so a client, or a fuzzer, can know a request is valid before sending it): no NUL
characters and no lone surrogates in any text or key (`StorableObject` for free-form JSON),
timestamps between 1900 and 2999, IANA zone names, BCP 47 locales.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

CLEAN_TEXT = "^[^\\u0000\\ud800-\\udfff]*$"
"""A string without NUL characters or lone surrogates (what JSON columns can store)."""
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
TIMESTAMP_PATTERN = "^(19|2[0-9])[0-9]{2}-"
ZONES = sorted(available_timezones())
LOCALE_PATTERN = "^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$"
EMAIL_PATTERN = "^[^@\\s\\u0000]+@[^@\\s\\u0000]+$"
PHONE_PATTERN = r"^\+?[0-9][0-9 ()./-]{3,30}$"
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_storable(value: Any, where: str) -> None:
    """Refuse what JSON columns cannot hold: NUL characters, lone surrogates (not UTF-8)
    and non-finite numbers, anywhere in `value` (keys too)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: text may not contain NUL characters")
        if _SURROGATE.search(value):
            raise ValueError(f"{where}: text must be valid Unicode (a lone surrogate?)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, where)
            check_storable(item, where)
    elif isinstance(value, list):
        for item in value:
            check_storable(item, where)


def _storable(value: Any) -> Any:
    check_storable(value, "value")
    return value


def _text_only(value: Any) -> Any:
    """JSON strings only: a number or a bool is not a time (pydantic would read 0 as 1970)."""
    if not isinstance(value, str | datetime):
        raise ValueError("give an ISO 8601 date-time string")
    return value


def _utc(value: datetime) -> datetime:
    """An offset-less time is UTC (as Segment reads it); out-of-range times are refused."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        moment = aware.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamps must lie between 1900 and 2999") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError("timestamps must lie between 1900 and 2999")
    return moment


Zone = Annotated[str, WithJsonSchema({"type": "string", "enum": ZONES})]
"""An IANA time zone name (checked against the zone database where it is stored)."""


def clamp(moment: datetime) -> datetime:
    """`moment` moved into the storable range (a corrected timestamp can leave it)."""
    return min(max(moment, EARLIEST), LATEST.replace(year=2999))


Timestamp = Annotated[
    datetime,
    BeforeValidator(_text_only),
    AfterValidator(_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]
"""An ISO 8601 time between 1900 and 2999; without an offset it is UTC; returned in UTC."""

STORABLE_MARK = "x-nudge-storable"
FreeForm = Annotated[
    dict[str, Any],
    AfterValidator(_storable),
    # Replaced by `{"$ref": "#/components/schemas/StorableObject"}` in the OpenAPI document
    # (`triggers.api.problems`): pydantic cannot point at a component it does not generate.
    WithJsonSchema({"type": "object", STORABLE_MARK: True}),
]
"""A JSON object of anything JSON holds, except NUL characters and lone surrogates."""


def text(max_length: int, *, min_length: int = 0, **options: Any) -> Any:
    """A string field of at most `max_length` characters. Documented as storable text; the
    model checks it (`check_storable`: the regex engine pydantic uses has no surrogates)."""
    return Field(
        min_length=min_length,
        max_length=max_length,
        json_schema_extra={"pattern": CLEAN_TEXT},
        **options,
    )


def _clean(value: str) -> str:
    check_storable(value, "text")
    return value


CleanText = Annotated[str, AfterValidator(_clean)]
"""A string without NUL characters or lone surrogates, checked."""


STORABLE_SCHEMAS: dict[str, dict[str, Any]] = {
    "StorableText": {"type": "string", "pattern": CLEAN_TEXT},
    "StorableValue": {
        "anyOf": [
            {"$ref": "#/components/schemas/StorableText"},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": {"$ref": "#/components/schemas/StorableValue"}},
            {"$ref": "#/components/schemas/StorableObject"},
        ]
    },
    "StorableObject": {
        "type": "object",
        "propertyNames": {"pattern": CLEAN_TEXT},
        "additionalProperties": {"$ref": "#/components/schemas/StorableValue"},
    },
}
"""Components the OpenAPI document gets (`triggers.api.problems` adds them)."""
