"""Events as they come in (Segment's HTTP tracking spec) and as journeys see them.

Every Segment call type: `track`, `identify`, `page`, `screen`, `group`, `alias`, alone or in
a `batch`. The models are lenient where Segment's clients are (extra fields, `null` ids,
offset-less timestamps read as UTC) and strict where storage needs it (no NUL characters,
no lone surrogates, finite numbers, bounded lengths, timestamps between 1970 and 2200).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from schemas.fields import CleanText, FreeForm, Timestamp, check_storable, text

__all__ = ["check_storable"]  # (re-exported: the profile checks share it)


def _none_if_blank(value: Any) -> Any:
    return None if value == "" else value


OptionalId = Annotated[
    Annotated[CleanText, text(255, min_length=1)] | None,
    BeforeValidator(_none_if_blank),
]
# An anonymous user is stored under `anonymous:<anonymousId>` in a 255-character column.
AnonymousId = Annotated[
    Annotated[CleanText, text(255 - len("anonymous:"), min_length=1)] | None,
    BeforeValidator(_none_if_blank),
]
# Every call names its user: a userId, an anonymousId, or both (the schema says so too).
_IDENTITY: JsonDict = {
    "anyOf": [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("userId", "anonymousId")
    ]
}


class SegmentCall(BaseModel):
    """Fields every Segment call has. Unknown fields are kept (Segment's clients add
    `channel`, `integrations`, `_metadata`, ...)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", json_schema_extra=_IDENTITY)

    user_id: OptionalId = Field(default=None, alias="userId")
    anonymous_id: AnonymousId = Field(default=None, alias="anonymousId")
    message_id: OptionalId = Field(default=None, alias="messageId")
    timestamp: Timestamp | None = None
    original_timestamp: Timestamp | None = Field(default=None, alias="originalTimestamp")
    sent_at: Timestamp | None = Field(default=None, alias="sentAt")
    context: FreeForm = Field(default_factory=dict)
    integrations: FreeForm = Field(default_factory=dict)
    write_key: str | None = Field(default=None, alias="writeKey", max_length=255)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        """`"anonymousId": null`, `"context": null` and the like mean "not given"."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @model_validator(mode="after")
    def _needs_an_identity(self) -> SegmentCall:
        if not self.user_id and not self.anonymous_id:
            raise ValueError("userId or anonymousId is required")
        # Every text and free-form field checked itself (`CleanText`, `FreeForm`).
        return self

    @property
    def identity(self) -> str:
        """The key Nudge finds the user by: the userId, else `anonymous:<anonymousId>`."""
        return self.user_id or f"anonymous:{self.anonymous_id}"

    def event_name(self) -> str:
        """The name the event is stored and routed under."""
        raise NotImplementedError

    def event_properties(self) -> dict[str, Any]:
        """The properties the event is stored (and routed) with."""
        raise NotImplementedError


class TrackCall(SegmentCall):
    """`POST /v1/track`: something the user did."""

    type: Literal["track"] = "track"
    event: CleanText = text(200, min_length=1)
    properties: FreeForm = Field(default_factory=dict)

    def event_name(self) -> str:
        return self.event

    def event_properties(self) -> dict[str, Any]:
        return dict(self.properties)


class IdentifyCall(SegmentCall):
    """`POST /v1/identify`: who the user is. Traits may come in `context.traits` (as
    RudderStack's clients send them) when there are none at the root."""

    type: Literal["identify"] = "identify"
    traits: FreeForm = Field(default_factory=dict)

    @model_validator(mode="after")
    def _context_traits(self) -> IdentifyCall:
        nested = self.context.get("traits")
        if not self.traits and isinstance(nested, dict):
            self.traits = dict(nested)
        return self

    def event_name(self) -> str:
        return "Identify"

    def event_properties(self) -> dict[str, Any]:
        return dict(self.traits)


class _Viewed(SegmentCall):
    name: CleanText | None = text(200, default=None)
    category: CleanText | None = text(200, default=None)
    properties: FreeForm = Field(default_factory=dict)

    def event_properties(self) -> dict[str, Any]:
        named = {k: v for k, v in (("name", self.name), ("category", self.category)) if v}
        return {**self.properties, **named}


class PageCall(_Viewed):
    """`POST /v1/page`: a web page view, routed to journeys as `Page Viewed`."""

    type: Literal["page"] = "page"

    def event_name(self) -> str:
        return "Page Viewed"


class ScreenCall(_Viewed):
    """`POST /v1/screen`: an app screen view, routed to journeys as `Screen Viewed`."""

    type: Literal["screen"] = "screen"

    def event_name(self) -> str:
        return "Screen Viewed"


class GroupCall(SegmentCall):
    """`POST /v1/group`: the user's company or team; its traits go on the profile."""

    type: Literal["group"] = "group"
    group_id: CleanText = text(255, min_length=1, alias="groupId")
    traits: FreeForm = Field(default_factory=dict)

    def event_name(self) -> str:
        return "Group"

    def event_properties(self) -> dict[str, Any]:
        return {"group_id": self.group_id, **self.traits}


class AliasCall(SegmentCall):
    """`POST /v1/alias`: `previousId` (an anonymous or older id) is the same person as
    `userId`; what Nudge holds under the previous id moves to the user."""

    type: Literal["alias"] = "alias"
    previous_id: CleanText = text(255, min_length=1, alias="previousId")

    @model_validator(mode="after")
    def _needs_user(self) -> AliasCall:
        if not self.user_id:
            raise ValueError("alias needs a userId")
        return self

    def event_name(self) -> str:
        return "Alias"

    def event_properties(self) -> dict[str, Any]:
        return {"previous_id": self.previous_id}


Call = TrackCall | IdentifyCall | PageCall | ScreenCall | GroupCall | AliasCall
CALL_TYPES: dict[str, type[SegmentCall]] = {
    "track": TrackCall,
    "identify": IdentifyCall,
    "page": PageCall,
    "screen": ScreenCall,
    "group": GroupCall,
    "alias": AliasCall,
}
ROUTED_TYPES = frozenset({"track", "page", "screen"})
"""Call types journeys see as events; the others change profiles only."""


class BatchCall(BaseModel):
    """`POST /v1/batch` (and `/v1/import`): items are validated one by one, so one bad or
    unknown item is skipped (and reported) instead of failing the batch."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    batch: list[dict[str, Any]] = Field(min_length=1, max_length=2500)
    context: FreeForm = Field(default_factory=dict)
    sent_at: Timestamp | None = Field(default=None, alias="sentAt")
    write_key: str | None = Field(default=None, alias="writeKey", max_length=255)


class RejectedItem(BaseModel):
    """A batch item that was not stored, and why."""

    index: int
    type: str | None = None
    errors: list[dict[str, str]] = Field(default_factory=list)


class AcceptedResponse(BaseModel):
    """What the tracking endpoints answer (always 200 when anything could be read):
    `success`, the stored message ids, and what was not stored."""

    model_config = ConfigDict(populate_by_name=True)

    success: bool = True
    message_ids: list[str] = Field(default_factory=list, alias="messageIds")
    duplicates: int = 0
    skipped: int = 0
    """Items of a type Nudge does not know (ignored, as Segment's destinations do)."""
    rejected: list[RejectedItem] = Field(default_factory=list)


class JourneyEvent(BaseModel):
    """An event as delivered to a journey run (signal payload).

    `message_id` makes delivery idempotent: a run ignores a second copy.
    """

    message_id: str
    name: str
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime
