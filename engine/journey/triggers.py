"""Triggers that no product event carries: inactivity, dates, places.

`@journey(trigger=...)` takes an event name, or one of these. Each one names the event
Nudge synthesizes for it (through the one outbox writer, `engine.store.outbox`) and says
which synthesized events start *this* journey, so the router treats them like any trigger:

* `Inactive("App Opened", for_=14d)`: `User Inactive`, written by the due-trigger sweep
  once no `App Opened` came for 14 days.
* `OnDate("birthday", anniversary=True, at=09:00)`: `Date Reached`, written by the sweep at
  the local time the date names.
* `Entered("office")` / `Exited("office")`: `Geofence Entered` / `Geofence Exited`, written
  by the router when two consecutive locations cross the fence.

Why a sweep and not a durable timer per user: see `engine/system/sweep.py`. Sandbox-safe:
plain values, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

INACTIVE_EVENT = "User Inactive"
DATE_EVENT = "Date Reached"
GEOFENCE_ENTERED = "Geofence Entered"
GEOFENCE_EXITED = "Geofence Exited"
JOURNEY_PROPERTY = "journey"
"""Synthesized `User Inactive`/`Date Reached` events name the journey they are due for."""


@dataclass(frozen=True)
class Inactive:
    """Start a run for a user whose last `event` is `for_` old (no such event since).

    Counted from the user's last `event` (a user who never sent one is not lapsed). A user
    who comes back before `for_` has passed starts the count again.
    """

    event: str
    for_: timedelta

    def __post_init__(self) -> None:
        if self.for_ <= timedelta(0):
            raise ValueError("Inactive(for_=) must be a positive duration")

    @property
    def synthesized(self) -> str:
        return INACTIVE_EVENT

    def starts(self, journey: str, properties: Mapping[str, Any]) -> bool:
        # A synthesized event names its journey; one a product sends itself names none.
        return properties.get(JOURNEY_PROPERTY) in (None, journey)


@dataclass(frozen=True)
class OnDate:
    """Start a run on a date the user's data names, at a local time in the user's zone.

    `attribute`: a profile attribute (`"birthday"`, or a dotted path such as
    `"appointment.starts_at"` into nested attributes), or, with `event=`, a property of that
    event (`OnDate("starts_at", event="Appointment Booked")`; a keyed journey plans one run
    per key value, and a newer event for the key moves the plan). The value is an ISO date
    or date-time. `offset` moves the date (`-timedelta(days=1)`: the day before); `at` is
    the local wall time (DST-correct) on the resulting day, or None to fire at the
    date-time itself plus `offset`. `anniversary`: every year on the date's month and day
    (29 February: the 28th in other years). Dates already past when planned never fire.
    An `exit_on` event of the journey cancels a plan that has not fired yet.
    """

    attribute: str
    at: time | None = time(9, 0)
    offset: timedelta = timedelta(0)
    anniversary: bool = False
    event: str | None = None

    @property
    def synthesized(self) -> str:
        return DATE_EVENT

    def value_in(self, data: Mapping[str, Any]) -> Any:
        """The attribute's raw value in `data` (profile attributes or event properties)."""
        return dig(data, self.attribute)

    def starts(self, journey: str, properties: Mapping[str, Any]) -> bool:
        # A synthesized event names its journey; one a product sends itself names none.
        return properties.get(JOURNEY_PROPERTY) in (None, journey)


@dataclass(frozen=True)
class Entered:
    """Start a run when the user's location enters the geofence `geofence` (nudge.toml
    `[[geofences]]`); `Geofence Entered` can also be an exit or a wait (property `geofence`)."""

    geofence: str

    @property
    def synthesized(self) -> str:
        return GEOFENCE_ENTERED

    def starts(self, journey: str, properties: Mapping[str, Any]) -> bool:
        return properties.get("geofence") == self.geofence


@dataclass(frozen=True)
class Exited:
    """Start a run when the user's location leaves the geofence `geofence`."""

    geofence: str

    @property
    def synthesized(self) -> str:
        return GEOFENCE_EXITED

    def starts(self, journey: str, properties: Mapping[str, Any]) -> bool:
        return properties.get("geofence") == self.geofence


def dig(data: Mapping[str, Any], path: str) -> Any:
    """`data["a"]["b"]` for the path `"a.b"` (a key with a dot in it is tried whole first)."""
    if path in data:
        return data[path]
    head, _, rest = path.partition(".")
    inner = data.get(head)
    return dig(inner, rest) if rest and isinstance(inner, Mapping) else None


Trigger = Inactive | OnDate | Entered | Exited
"""A trigger that is not a plain event name."""
