"""Places: location events move the user's last location; crossing a `[[geofences]]` fence
synthesizes `Geofence Entered` / `Geofence Exited`, which start (and end) journeys."""

from __future__ import annotations

from datetime import time

from sqlalchemy import select

from engine.config.nudge_toml import NudgeConfig
from engine.geo import Fences, distance_m, location_of
from engine.store import gdpr
from engine.store.models import Event, User, UserLocation
from engine.testing.kit import JourneyEnv, TestUser
from engine.testing.pytest_plugin import EnvFactory
from tests.journeys import TPlace
from tests.kit import kit_templates
from tests.kit.clock import next_local

OFFICE = (-33.8688, 151.2093)  # Sydney town hall; the fence is a 200 m circle around it
CONFIG = NudgeConfig.model_validate(
    {
        "geofences": [
            {"name": "office", "latitude": OFFICE[0], "longitude": OFFICE[1], "radius": 200},
            # Hyde Park, as a polygon of [latitude, longitude] corners.
            {
                "name": "park",
                "polygon": [
                    [-33.8690, 151.2100],
                    [-33.8690, 151.2130],
                    [-33.8760, 151.2130],
                    [-33.8760, 151.2100],
                ],
            },
        ]
    }
)


async def test_entering_a_geofence_between_two_locations_starts_a_journey(
    journey_env: EnvFactory,
) -> None:
    env = await journey_env(
        TPlace, config=CONFIG, templates=kit_templates(), start_at=next_local("UTC", time(9))
    )
    ana = await env.user("ana", zone="Australia/Sydney")
    await env.emit(ana, "Location Updated", {"latitude": -33.8800, "longitude": 151.2000})
    assert await env.runs(ana) == [] and await _crossings(env, ana) == []
    await env.emit(ana, "Location Updated", {"latitude": -33.8690, "longitude": 151.2095})
    assert await _crossings(env, ana) == [("Geofence Entered", "office")]
    run = await env.run(ana, "t_place")
    assert [m.template for m in await env.sent(ana)] == ["welcome"]
    # Leaving (a location in context.location, as Segment's spec puts it) ends the run.
    park = {"location": {"latitude": -33.8700, "longitude": 151.2115}}
    await env.emit(ana, "Location Updated", context=park)
    assert await _crossings(env, ana) == [
        ("Geofence Entered", "office"),
        ("Geofence Exited", "office"),
        ("Geofence Entered", "park"),
    ]
    run = await env.run(ana, "t_place")
    assert run.outcome == "exited:Geofence Exited"
    # The last location is personal data: in the user's export, gone after erasure.
    async with env.context.sessions() as session:
        user = await session.get(User, ana.id)
        assert user is not None
        exported = await gdpr.export(session, user=user)
        assert exported.location is not None and exported.location.geofences == ["park"]
        await gdpr.erase(session, user=user, salt="test")
        await session.flush()
        assert await session.get(UserLocation, ana.id) is None


def test_fences_circles_and_polygons() -> None:
    fences = Fences(CONFIG.geofences)
    assert fences.containing(*OFFICE) == ["office"]
    assert fences.containing(-33.8700, 151.2115) == ["park"]
    assert fences.containing(-33.8800, 151.2000) == []
    assert 190 < distance_m(*OFFICE, -33.8688 - 0.0018, 151.2093) < 210  # ~200 m south
    assert location_of({"latitude": 1.5, "longitude": 2}, {}) == (1.5, 2.0)
    assert location_of({}, {"location": {"latitude": -3, "longitude": 4.25}}) == (-3.0, 4.25)
    assert location_of({"latitude": True, "longitude": 2}, {}) is None
    assert location_of({"latitude": 91, "longitude": 2}, {}) is None


async def _crossings(env: JourneyEnv, user: TestUser) -> list[tuple[str, str]]:
    async with env.context.sessions() as session:
        query = (
            select(Event)
            .where(Event.user_id == user.id, Event.name.like("Geofence %"))
            .order_by(Event.id)
        )
        return [(e.name, e.properties["geofence"]) for e in await session.scalars(query)]
