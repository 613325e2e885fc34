"""Places: which geofences (nudge.toml `[[geofences]]`) a location lies in, and the
distances segments' `near(...)` tests (`engine.segments.compile`). Pure functions.

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


def bounding_box(
    latitude: float, longitude: float, radius_m: float
) -> tuple[float, float, list[tuple[float, float]]]:
    """(south, north, longitude ranges) holding every point within `radius_m` metres of the
    point: a cheap prefilter before `distance_m`, never smaller than the circle.

    Each range is (west, east) with west <= east, in [-180, 180]: two ranges when the circle
    crosses the antimeridian, the whole circle of longitudes when it holds a pole. The
    widest longitude of a spherical cap is asin(sin(d) / cos(latitude)), d the angular radius.
    """
    spread = radius_m / EARTH_RADIUS_M  # the angular radius, in radians
    margin = 1e-9  # degrees (~0.1 mm): rounding never shaves a member off the edge
    south = latitude - math.degrees(spread) - margin
    north = latitude + math.degrees(spread) + margin
    if spread >= math.pi or south <= -90 or north >= 90:
        return max(south, -90.0), min(north, 90.0), [(-180.0, 180.0)]
    width = math.degrees(math.asin(math.sin(spread) / math.cos(math.radians(latitude))))
    west, east = longitude - width - margin, longitude + width + margin
    if east - west >= 360:
        return south, north, [(-180.0, 180.0)]
    if west < -180:
        return south, north, [(west + 360, 180.0), (-180.0, east)]
    if east > 180:
        return south, north, [(west, 180.0), (-180.0, east - 360)]
    return south, north, [(west, east)]


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
