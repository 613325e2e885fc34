"""engine.geo: the bounding box segments' `near(...)` prefilters with never cuts into the
circle, across the antimeridian and around the poles (a property test against
`distance_m`)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from engine.geo import EARTH_RADIUS_M, bounding_box, distance_m

latitudes = st.floats(min_value=-90, max_value=90)
longitudes = st.floats(min_value=-180, max_value=180)


def inside(box: tuple[float, float, list[tuple[float, float]]], lat: float, lon: float) -> bool:
    south, north, ranges = box
    return south <= lat <= north and any(west <= lon <= east for west, east in ranges)


@given(
    latitudes,
    longitudes,
    st.floats(min_value=1, max_value=3_000_000),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=2 * math.pi),
)
def test_every_point_of_the_circle_is_in_the_box(
    lat: float, lon: float, radius_m: float, fraction: float, bearing: float
) -> None:
    # A point `fraction` of the radius away along `bearing` (the direct geodesic problem).
    d, phi, lam = radius_m * fraction / EARTH_RADIUS_M, math.radians(lat), math.radians(lon)
    phi2 = math.asin(math.sin(phi) * math.cos(d) + math.cos(phi) * math.sin(d) * math.cos(bearing))
    lam2 = lam + math.atan2(
        math.sin(bearing) * math.sin(d) * math.cos(phi),
        math.cos(d) - math.sin(phi) * math.sin(phi2),
    )
    lat2 = math.degrees(phi2)
    lon2 = (math.degrees(lam2) + 540) % 360 - 180
    if distance_m(lat, lon, lat2, lon2) <= radius_m:
        assert inside(bounding_box(lat, lon, radius_m), lat2, lon2)


def test_the_box_splits_at_the_antimeridian_and_opens_at_the_poles() -> None:
    south, north, ranges = bounding_box(-17.7, 179.9, 50_000)  # Fiji, 50 km
    assert len(ranges) == 2 and ranges[0][1] == 180 and ranges[1][0] == -180
    assert inside((south, north, ranges), -17.7, -179.8)
    assert not inside((south, north, ranges), -17.7, 178.0)
    assert bounding_box(89.9, 0, 50_000)[2] == [(-180.0, 180.0)]
    assert bounding_box(0, 0, 30_000_000) == (-90.0, 90.0, [(-180.0, 180.0)])
    south, north, [(west, east)] = bounding_box(52.52, 13.405, 5_000)
    assert 52.47 < south < north < 52.57 and 13.32 < west < east < 13.49
