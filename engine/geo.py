"""Places: which geofences (nudge.toml `[[geofences]]`) a location lies in. Pure functions.

Circles are great-circle distances (haversine, on a 6,371 km sphere: within 0.5 % of the
ellipsoid, metres at city scale). Polygons use shapely's prepared geometries on
(longitude, latitude): planar, which is exact enough for fences of a few kilometres that
do not straddle the antimeridian.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from shapely import Point, Polygon, prepare

from engine.config.nudge_toml import Geofence

EARTH_RADIUS_M = 6_371_000.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class Fences:
    """The configured geofences, ready to test points against."""

    def __init__(self, fences: Iterable[Geofence]) -> None:
        self._circles: list[tuple[str, float, float, float]] = []
        self._polygons: list[tuple[str, Polygon]] = []
        for fence in fences:
            if fence.polygon is not None:
                shape = Polygon([(lon, lat) for lat, lon in fence.polygon])
                prepare(shape)
                self._polygons.append((fence.name, shape))
            else:
                assert fence.latitude is not None and fence.longitude is not None
                assert fence.radius is not None
                self._circles.append((fence.name, fence.latitude, fence.longitude, fence.radius))

    def __bool__(self) -> bool:
        return bool(self._circles or self._polygons)

    def containing(self, latitude: float, longitude: float) -> list[str]:
        """Names of the geofences the point lies in (on the edge counts as in), sorted."""
        inside = [
            name
            for name, lat, lon, radius in self._circles
            if distance_m(latitude, longitude, lat, lon) <= radius
        ]
        point = Point(longitude, latitude)
        inside += [name for name, shape in self._polygons if shape.intersects(point)]
        return sorted(inside)


def location_of(
    properties: Mapping[str, Any], context: Mapping[str, Any]
) -> tuple[float, float] | None:
    """The (latitude, longitude) an event reports: `properties.latitude/longitude`, else
    `context.location.latitude/longitude` (Segment's spec); None if absent or invalid."""
    location = context.get("location")
    for source in (properties, location if isinstance(location, Mapping) else {}):
        lat, lon = source.get("latitude"), source.get("longitude")
        if isinstance(lat, bool) or isinstance(lon, bool):
            continue
        if not (isinstance(lat, int | float) and isinstance(lon, int | float)):
            continue
        if -90 <= lat <= 90 and -180 <= lon <= 180 and math.isfinite(lat + lon):
            return float(lat), float(lon)
    return None
