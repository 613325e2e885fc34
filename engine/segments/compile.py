"""A segment tree as one SQLAlchemy condition on `users`, for Postgres and SQLite alike.

Attributes read the JSON column (`->>` on Postgres, `json_extract` on SQLite) and compare
numbers only with numbers (a string `"12"` is not `>= 10`, and never a cast error); events
and consent are correlated subqueries on the user's own rows. `near(...)` reads the user's
one `user_locations` row: a latitude/longitude box (`engine.geo.bounding_box`, split in two
across the antimeridian) that costs only comparisons, then the great-circle distance:
haversine in SQL on Postgres, and on SQLite `engine.geo.distance_m` itself, registered on
every connection (`engine.store.session`), since SQLite builds differ in whether they have
trigonometry. `now` is explicit, so a segment evaluated by a workflow under virtual time
agrees with that workflow's clock.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)

from engine.geo import EARTH_RADIUS_M, bounding_box
from engine.segments.language import (
    And,
    Attr,
    Compare,
    ConsentState,
    Count,
    Did,
    EventFilter,
    Member,
    Near,
    Node,
    Not,
    Or,
    Subscribed,
)
from engine.store.models import Consent, Event, User, UserLocation
from engine.store.session import SQLITE_DISTANCE_M
from schemas.common import ALL_TOPICS

_OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


def to_sql(node: Node, *, now: datetime, dialect: str) -> ColumnElement[bool]:
    """The condition a `users` row meets when the user is in the segment at `now` (aware).

    `dialect` is the session's ("postgresql" or "sqlite"). Erased and merged users are never
    members (see `engine.store.segments`, which adds that).
    """
    return _Compiler(now=now, dialect=dialect).node(node)


class _Compiler:
    def __init__(self, *, now: datetime, dialect: str) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.now = now
        self.postgres = dialect == "postgresql"

    def node(self, node: Node) -> ColumnElement[bool]:
        match node:
            case And(items):
                return and_(*(self.node(i) for i in items))
            case Or(items):
                return or_(*(self.node(i) for i in items))
            case Not(item):
                # SQL's NOT of an unknown (NULL) is unknown: a missing attribute is "not equal".
                return not_(func.coalesce(self.node(item), false()))
            case Attr():
                return self.typed(node, True) == true()
            case Did(events):
                found: ColumnElement[bool] = exists(self.events(events))
                return found
            case Near():
                close: ColumnElement[bool] = exists(self.near(node))
                return close
            case Subscribed(channel, topic):
                subscribed: ColumnElement[bool] = self.consent(channel, topic) == "subscribed"
                return subscribed
            case Compare(left=Count(events), op=op, value=value):
                counted = select(func.count()).select_from(self.events(events).subquery())
                return _OPS[op](counted.scalar_subquery(), value)  # type: ignore[no-any-return]
            case Compare(left=ConsentState(channel, topic), op=op, value=value):
                state = func.coalesce(self.consent(channel, topic), "unknown")
                return _OPS[op](state, value)  # type: ignore[no-any-return]
            case Compare(left=Attr() as attr, op=op, value=None):
                missing = self.json_type(attr).is_(None) | (self.json_type(attr) == "null")
                return missing if op == "==" else not_(missing)
            case Compare(left=Attr() as attr, op=op, value=value):
                return _OPS[op](self.typed(attr, value), value)  # type: ignore[no-any-return]
            case Member(left=attr, values=values, negated=negated):
                found = or_(*(self.typed(attr, v) == v for v in values)) if values else false()
                return not_(func.coalesce(found, false())) if negated else found
        raise TypeError(f"not a segment node: {node!r}")

    # -- attributes ------------------------------------------------------------------------

    def json_type(self, attr: Attr) -> ColumnElement[Any]:
        """The JSON type name of the attribute (NULL when absent), per dialect."""
        if self.postgres:
            return func.jsonb_typeof(User.attributes[attr.path])
        return func.json_type(User.attributes, _json_path(attr.path))

    def typed(self, attr: Attr, value: Any) -> ColumnElement[Any]:
        """The attribute as an SQL value of `value`'s kind, NULL when it holds another kind."""
        if attr.path[0] == "timezone":
            return User.timezone.expression
        if attr.path[0] == "locale":
            return User.locale.expression
        kinds: tuple[str, ...]
        if isinstance(value, bool):
            kinds = ("boolean",) if self.postgres else ("true", "false")
        elif isinstance(value, int | float):
            kinds = ("number",) if self.postgres else ("integer", "real")
        else:
            kinds = ("string",) if self.postgres else ("text",)
        element = User.attributes[attr.path]
        if isinstance(value, bool):
            raw: ColumnElement[Any] = element.as_boolean()
        elif isinstance(value, int | float):
            raw = element.as_float()
        else:
            raw = element.as_string()
        return case((self.json_type(attr).in_(kinds), raw), else_=None)

    # -- events and consent ----------------------------------------------------------------

    def events(self, events: EventFilter) -> Any:
        query = select(Event.id).where(Event.user_id == User.id, Event.name == events.event)
        if events.within is not None:
            query = query.where(Event.timestamp >= self.now - events.within)
        query = query.where(Event.timestamp <= self.now)
        for name, value in events.where.items():
            prop = Event.properties[name]
            if isinstance(value, bool):
                query = query.where(prop.as_boolean() == value)
            elif isinstance(value, int | float):
                kind = (
                    func.jsonb_typeof(prop) == "number"
                    if self.postgres
                    else func.json_type(Event.properties, _json_path((name,))).in_(
                        ("integer", "real")
                    )
                )
                query = query.where(kind, prop.as_float() == value)
            else:
                query = query.where(prop.as_string() == value)
        return query.correlate(User)

    # -- places ----------------------------------------------------------------------------

    def near(self, near: Near) -> Any:
        """The user's location row when it lies within the radius (and is fresh enough)."""
        radius_m = near.km * 1000
        south, north, ranges = bounding_box(near.latitude, near.longitude, radius_m)
        query = select(UserLocation.user_id).where(
            UserLocation.user_id == User.id,
            UserLocation.latitude.between(south, north),
            or_(*(UserLocation.longitude.between(west, east) for west, east in ranges)),
            self.distance_m(near.latitude, near.longitude) <= radius_m,
        )
        if near.within is not None:
            query = query.where(UserLocation.at >= self.now - near.within)
        return query.correlate(User)

    def distance_m(self, latitude: float, longitude: float) -> ColumnElement[float]:
        """Metres from the user's location to the point: `engine.geo.distance_m` in SQL."""
        if not self.postgres:
            return getattr(func, SQLITE_DISTANCE_M)(  # type: ignore[no-any-return]
                UserLocation.latitude, UserLocation.longitude, latitude, longitude, type_=Float
            )
        # Haversine, with the point's own terms computed here, once.
        phi = func.radians(UserLocation.latitude, type_=Float)
        half_dphi = func.sin((phi - math.radians(latitude)) * 0.5, type_=Float)
        half_dlon = func.sin(
            (func.radians(UserLocation.longitude, type_=Float) - math.radians(longitude)) * 0.5,
            type_=Float,
        )
        h = half_dphi * half_dphi + math.cos(math.radians(latitude)) * func.cos(
            phi, type_=Float
        ) * (half_dlon * half_dlon)
        angle = func.asin(func.least(1.0, func.sqrt(h, type_=Float), type_=Float), type_=Float)
        return 2 * EARTH_RADIUS_M * angle

    def consent(self, channel: str, topic: str) -> Any:
        """The newest consent entry for (channel, topic or `all`), as a scalar subquery."""
        return (
            select(Consent.state)
            .where(
                Consent.user_id == User.id,
                Consent.channel == channel,
                Consent.topic.in_([topic, ALL_TOPICS]),
            )
            .order_by(Consent.id.desc())
            .limit(1)
            .correlate(User)
            .scalar_subquery()
        )


def _json_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{part}"' for part in path)
