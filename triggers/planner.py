"""What the router does besides routing, for triggers no product event carries.

Called by the router for each claimed batch, in the batch's transaction and in each user's
order (so a rolled-back batch plans nothing, and a retried one plans the same again):

* **Inactivity** (`Inactive("App Opened", for_=14d)`): a watched event starts the user's
  count again (`engine.store.due.touch_inactive`); the sweep fires what is due.
* **Dates from events** (`OnDate("starts_at", event="Appointment Booked", ...)`): the event
  plans an entry at the local time the rule names, in the user's zone; a newer event for the
  same key moves it; the journey's `exit_on` event cancels it.
* **Places**: a location event (`properties.latitude/longitude` or `context.location`)
  moves the user's last location (`engine.store.locations`); crossing a `[[geofences]]`
  fence synthesizes `Geofence Entered` / `Geofence Exited` through the outbox writer, with
  a message id derived from the location event (a retried batch writes no second one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from engine.config.nudge_toml import NudgeConfig
from engine.geo import Fences, location_of
from engine.journey import JourneySpec
from engine.journey.triggers import GEOFENCE_ENTERED, GEOFENCE_EXITED, Inactive, OnDate
from engine.localtime import date_due, parse_date
from engine.store import due, locations, outbox
from engine.store.models import Event, User
from schemas.events import ROUTED_TYPES

MAX_KEY_LENGTH = 200


@dataclass
class Planned:
    """What planning a batch did: events it synthesized (routed by a later batch), and the
    earliest entry it planned due sooner than the sweep's regular look (`[triggers]
    sweep_every`), which the router wakes the sweep for."""

    synthesized: int = 0
    wake_at: datetime | None = None

    def due(self, when: datetime) -> None:
        if self.wake_at is None or when < self.wake_at:
            self.wake_at = when


class Planner:
    """Plans inactivity and date entries and synthesizes geofence events for a batch."""

    def __init__(self, *, specs: Iterable[JourneySpec], config: NudgeConfig) -> None:
        specs = list(specs)
        self._inactive = [(s, s.starts) for s in specs if isinstance(s.starts, Inactive)]
        self._dates = [
            (s, s.starts)
            for s in specs
            if isinstance(s.starts, OnDate) and s.starts.event is not None
        ]
        self._fences = Fences(config.geofences)
        self._default_zone = config.timezone
        self._every = config.triggers.sweep_every

    async def plan(self, session: AsyncSession, events: list[Event], *, at: datetime) -> Planned:
        """Plan for the batch's events (in id order)."""
        planned = Planned()
        tracked = [e for e in events if e.type in ROUTED_TYPES]
        if not tracked:
            return planned
        for spec, trigger in self._inactive:
            seen: dict[str, datetime] = {}
            for event in tracked:
                if event.name == trigger.event:
                    # When it happened, but never later than it arrived (a client clock
                    # running ahead must not postpone the count).
                    when = min(event.timestamp, event.received_at)
                    seen[event.user_id] = max(when, seen.get(event.user_id, when))
            await due.touch_inactive(
                session, journey=spec.name, window=trigger.for_, seen=seen, at=at
            )
            if trigger.for_ <= self._every:
                for when in seen.values():
                    planned.due(when + trigger.for_)
        if self._dates:
            await self._plan_dates(session, tracked, planned)
        planned.synthesized = await self._cross_fences(session, tracked, at=at)
        return planned

    async def _plan_dates(
        self, session: AsyncSession, events: list[Event], planned: Planned
    ) -> None:
        wanted = {e.user_id for e in events for _, t in self._dates if e.name == t.event}
        exits = {e.user_id for e in events for s, _ in self._dates if e.name in s.exit_on}
        if not wanted and not exits:
            return
        zones = await self._zones(session, wanted)
        for event in events:
            properties = dict(event.properties or {})
            for spec, trigger in self._dates:
                key = _key(spec, properties)
                if key is None:
                    continue
                if event.name in spec.exit_on:
                    await due.cancel(session, journey=spec.name, user_id=event.user_id, key=key)
                    continue
                if event.name != trigger.event:
                    continue
                value = parse_date(trigger.value_in(properties))
                when = None
                if value is not None:
                    when = date_due(
                        value,
                        at=trigger.at,
                        offset=trigger.offset,
                        anniversary=trigger.anniversary,
                        zone=zones.get(event.user_id) or self._default_zone,
                        after=event.received_at,
                    )
                if when is None:  # no date, or one already past: nothing (more) to remind of
                    await due.cancel(session, journey=spec.name, user_id=event.user_id, key=key)
                    continue
                row = {
                    "journey": spec.name,
                    "user_id": event.user_id,
                    "key": key,
                    "due_at": when,
                    "detail": properties,
                }
                await due.plan(session, rows=[row], at=event.received_at)
                if when - event.received_at <= self._every:
                    planned.due(when)

    async def _zones(self, session: AsyncSession, user_ids: set[str]) -> dict[str, str | None]:
        if not user_ids:
            return {}
        rows = await session.execute(
            select(User.id, User.timezone).where(User.id.in_(sorted(user_ids)))
        )
        return {uid: zone for uid, zone in rows}

    async def _cross_fences(
        self, session: AsyncSession, events: list[Event], *, at: datetime
    ) -> int:
        made = 0
        for event in events:
            point = location_of(event.properties or {}, event.context or {})
            if point is None:
                continue
            inside = self._fences.containing(*point) if self._fences else []
            before = await locations.move(
                session,
                user_id=event.user_id,
                latitude=point[0],
                longitude=point[1],
                taken_at=event.timestamp,
                geofences=inside,
                at=at,
            )
            # The first location known: every fence it lies in counts as entered.
            previous = set(before or [])
            crossings = [(GEOFENCE_EXITED, n) for n in sorted(previous - set(inside))]
            crossings += [(GEOFENCE_ENTERED, n) for n in inside if n not in previous]
            for name, fence in crossings:
                kind = "entered" if name == GEOFENCE_ENTERED else "exited"
                made += await outbox.add_event(
                    session,
                    user_id=event.user_id,
                    name=name,
                    message_id=f"geofence/{fence}/{kind}/{event.message_id}"[:300],
                    properties={"geofence": fence},
                    source="geofence",
                    timestamp=event.timestamp,
                    received_at=event.received_at,
                )
        return made


def _key(spec: JourneySpec, properties: Mapping[str, Any]) -> str | None:
    """The key of a keyed journey's plan ("" when not keyed); None: the event lacks it."""
    if spec.key is None:
        return ""
    value = properties.get(spec.key)
    if value is None or len(str(value)) > MAX_KEY_LENGTH:
        return None
    return str(value)
