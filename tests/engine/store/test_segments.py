"""engine.store.segments: segment expressions evaluated as SQL on Postgres and SQLite, in
bulk (keyset pages), as a size and sample, and for one user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.segments import parse
from engine.store import consent, locations, outbox
from engine.store import segments as store
from engine.store.users import apply_profile, ensure_user
from schemas.common import ConsentSource, ConsentState

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


async def person(session: AsyncSession, name: str, **profile: object) -> str:
    user = await ensure_user(session, external_id=name)
    apply_profile(user, dict(profile))
    await session.flush()
    return user.id


async def event(
    session: AsyncSession, uid: str, name: str, days_ago: float, **properties: object
) -> None:
    at = NOW - timedelta(days=days_ago)
    await outbox.add_event(
        session,
        user_id=uid,
        name=name,
        message_id=f"{uid}-{name}-{days_ago}-{sorted(properties.items())}",
        properties=dict(properties),
        source="test",
        timestamp=at,
        received_at=at,
    )


@pytest.fixture
async def people(db: Sessions) -> dict[str, str]:
    async with db() as s, s.begin():
        ids = {
            "ann": await person(
                s, "ann", plan="pro", age=34, country="FR", timezone="Europe/Paris"
            ),
            "bob": await person(s, "bob", plan="pro", age="34", country="BE"),
            "cat": await person(s, "cat", plan="free", age=19, vip=True, address={"city": "Lyon"}),
            "dan": await person(s, "dan", plan="pro", vip=False),
        }
        await event(s, ids["ann"], "App Opened", 3)
        await event(s, ids["bob"], "App Opened", 20)
        await event(s, ids["cat"], "Order Completed", 2, currency="EUR", total=50)
        await event(s, ids["cat"], "Order Completed", 10, currency="EUR", total=20)
        await event(s, ids["cat"], "Order Completed", 40, currency="EUR", total=20)
        await event(s, ids["dan"], "Order Completed", 5, currency="USD", total=50)
        await event(s, ids["dan"], "App Opened", -1)  # after NOW: not yet happened
        await consent.record(
            s,
            user_id=ids["ann"],
            channel="sms",
            topic="marketing",
            state=ConsentState.SUBSCRIBED,
            source=ConsentSource.API,
        )
        await consent.record(
            s,
            user_id=ids["ann"],
            channel="sms",
            topic="all",
            state=ConsentState.UNSUBSCRIBED,
            source=ConsentSource.SMS_KEYWORD,
        )
        await consent.record(
            s,
            user_id=ids["bob"],
            channel="sms",
            topic="marketing",
            state=ConsentState.SUBSCRIBED,
            source=ConsentSource.API,
        )
    return ids


CASES = [
    ('plan == "pro" and not did("App Opened", within="14d")', {"bob", "dan"}),
    ('did("App Opened")', {"ann", "bob"}),
    ('count("Order Completed", where={"currency": "EUR"}, within="30d") >= 2', {"cat"}),
    ('count("Order Completed", where={"total": 50}) == 1', {"cat", "dan"}),
    ('count("Order Completed") == 0', {"ann", "bob"}),
    ("age >= 18 and age < 30", {"cat"}),
    ('age == "34"', {"bob"}),  # a string is not the number 34, and no cast fails
    ("vip", {"cat"}),
    ("not vip", {"ann", "bob", "dan"}),
    ('country in ["FR", "BE"]', {"ann", "bob"}),
    ('country not in ["FR"]', {"bob", "cat", "dan"}),
    ('address.city == "Lyon"', {"cat"}),
    ("country == null", {"cat", "dan"}),
    ('timezone == "Europe/Paris"', {"ann"}),
    ('subscribed("sms")', {"bob"}),  # ann's STOP (topic all) wins over her opt-in
    ('consent("sms") == "unknown"', {"cat", "dan"}),
    ('consent("sms") == "unsubscribed" or plan == "free"', {"ann", "cat"}),
]


async def _members_agree(
    db: Sessions, people: dict[str, str], expression: str, expected: set[str]
) -> None:
    """The bulk page, the size and each one-user check all give `expected`."""
    tree = parse(expression)
    names = {uid: name for name, uid in people.items()}
    async with db() as s:
        members = await store.page(s, tree=tree, at=NOW, limit=100)
        assert {names[m.user_id] for m in members} == expected
        assert await store.size(s, tree=tree, at=NOW) == len(expected)
        for name, uid in people.items():
            assert await store.is_member(s, tree=tree, at=NOW, user_id=uid) is (name in expected)


@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_membership_in_bulk_and_one_by_one(
    db: Sessions, people: dict[str, str], expression: str, expected: set[str]
) -> None:
    await _members_agree(db, people, expression, expected)


async def test_pages_are_keyset_pages_by_user_id(db: Sessions, people: dict[str, str]) -> None:
    tree = parse('plan == "pro" or plan == "free"')
    seen: list[str] = []
    after = None
    async with db() as s:
        while page := await store.page(s, tree=tree, at=NOW, after=after, limit=3):
            seen += [m.user_id for m in page]
            after = page[-1].user_id
        assert seen == sorted(people.values())
        assert await store.zones(s, tree=tree, at=NOW) == {"Europe/Paris": 1, None: 3}
        only_paris = await store.page(s, tree=tree, at=NOW, timezones=["Europe/Paris"])
        assert [m.user_id for m in only_paris] == [people["ann"]]
        sample = await store.sample(s, tree=tree, at=NOW, limit=2)
        assert sample == sorted((uid, name) for name, uid in people.items())[:2]


BERLIN = (52.5200, 13.4050)
SUVA = (-18.1416, 178.4419)  # Fiji: its 300 km circle crosses the antimeridian


@pytest.fixture
async def travellers(db: Sessions) -> dict[str, str]:
    """Last known locations: two in Berlin (one a month old), one in Potsdam (~27 km out),
    two around Fiji on either side of the antimeridian, and one nobody has located."""
    fixes = {
        "eva": (52.5163, 13.3777, 1),  # the Brandenburg Gate, ~1.9 km from the point
        "finn": (52.5450, 13.4200, 30),  # ~3 km, a fix taken a month ago
        "gus": (52.3906, 13.0645, 1),  # Potsdam
        "hana": (-16.7770, 179.3400, 2),  # Labasa, Vanua Levu: ~180 km from Suva
        "ilo": (-16.9000, -179.9000, 2),  # just east of the line: ~220 km
        "jo": (-21.1789, -175.1982, 2),  # Nuku'alofa, Tonga: ~750 km
    }
    async with db() as s, s.begin():
        ids = {"kim": await person(s, "kim", plan="pro")}  # never located
        for name, (lat, lon, days_ago) in fixes.items():
            ids[name] = await person(s, name, plan="pro" if name in ("eva", "gus") else "free")
            at = NOW - timedelta(days=days_ago)
            await locations.move(
                s,
                user_id=ids[name],
                latitude=lat,
                longitude=lon,
                taken_at=at,
                geofences=[],
                at=at,
            )
        await event(s, ids["finn"], "App Opened", 2)
        await event(s, ids["eva"], "Order Completed", 3, currency="EUR")
    return ids


PLACES = [
    ("near(52.52, 13.405, km=5)", {"eva", "finn"}),
    ('near(52.52, 13.405, km=5, within="7d")', {"eva"}),  # finn's fix is a month old
    ("near(52.52, 13.405, km=50)", {"eva", "finn", "gus"}),
    ("near(52.52, 13.405, km=1)", set()),
    ("near(-18.1416, 178.4419, km=300)", {"hana", "ilo"}),  # both sides of 180°
    ("near(-16.9, 180, km=60)", {"ilo"}),  # a centre on the line itself
    ("near(-18.1416, 178.4419, km=1000)", {"hana", "ilo", "jo"}),
    ('near(52.52, 13.405, km=50) and plan == "pro"', {"eva", "gus"}),
    ('near(52.52, 13.405, km=5) and did("App Opened", within="7d")', {"finn"}),
    (
        'near(52.52, 13.405, km=5) and not did("Order Completed") or near(-18.14, 178.44, km=200)',
        {"finn", "hana"},
    ),
    ("not near(52.52, 13.405, km=50)", {"hana", "ilo", "jo", "kim"}),  # no fix: not near
]


@pytest.mark.parametrize(("expression", "expected"), PLACES, ids=[c[0] for c in PLACES])
async def test_near_reads_the_last_location_in_bulk_and_one_by_one(
    db: Sessions, travellers: dict[str, str], expression: str, expected: set[str]
) -> None:
    await _members_agree(db, travellers, expression, expected)
