"""Events as they come in (Segment's HTTP tracking spec) and as journeys see them."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


def check_storable(value: Any, where: str) -> None:
    """Refuse what JSON columns cannot hold: NUL characters and non-finite numbers."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: text may not contain NUL characters")
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


class _SegmentCall(BaseModel):
    """Fields common to Segment's `track` and `identify` calls."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    user_id: str | None = Field(default=None, alias="userId", min_length=1, max_length=255)
    anonymous_id: str | None = Field(
        default=None, alias="anonymousId", min_length=1, max_length=255
    )
    message_id: str | None = Field(default=None, alias="messageId", min_length=1, max_length=255)
    timestamp: AwareDatetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _needs_an_identity(self) -> _SegmentCall:
        if not self.user_id and not self.anonymous_id:
            raise ValueError("userId or anonymousId is required")
        for name in ("properties", "traits", "context"):
            check_storable(getattr(self, name, None), name)
        check_storable([self.user_id, self.anonymous_id, self.message_id], "ids")
        return self


class TrackCall(_SegmentCall):
    """`POST /v1/track`."""

    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class IdentifyCall(_SegmentCall):
    """`POST /v1/identify`."""

    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


class BatchCall(BaseModel):
    """`POST /v1/batch`: items are validated one by one so errors can name the index."""

    batch: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    context: dict[str, Any] = Field(default_factory=dict)


class AcceptedResponse(BaseModel):
    success: bool = True
    message_ids: list[str] = Field(default_factory=list, alias="messageIds")
    duplicates: int = 0

    model_config = ConfigDict(populate_by_name=True)


class JourneyEvent(BaseModel):
    """An event as delivered to a journey run (signal payload).

    `message_id` makes delivery idempotent: a run ignores a second copy.
    """

    message_id: str
    name: str
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime
