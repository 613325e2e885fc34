"""Stats through the API on the whole product (API, router, worker, Postgres, Temporal):
120 simulated users through `win_back`, with a known conversion rule per arm; the funnel
and the experiment readout match the counts worked out from each user's arm."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client

from engine.config.nudge_toml import NudgeConfig
from engine.journey.split import assign
from engine.observability.metrics import REGISTRY
from tests.kit import Stack, eventually
from workflows import WinBack

USERS = 120
CONVERT_EVERY = {"discount": 2, "content": 4, "holdout": 5}
"""Within each arm, in user order, every n-th user comes back (the goal, `App Opened`)."""


@pytest.fixture
async def stack(postgres_url: str, temporal_client: Client, task_queue: str) -> Any:
    config = NudgeConfig.model_validate({"journeys": {"win_back": {"second_offer_after": "1d"}}})
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        config=config,
        journeys={"win_back": WinBack},
    ) as s:
        yield s


async def _arms(stack: Stack) -> dict[str, list[str]]:
    """Register the users (a device each) and start their runs; each user's arm, as
    `split` assigns it from Nudge's id of the user."""
    arms: dict[str, list[str]] = {"discount": [], "content": [], "holdout": []}
    for n in range(USERS):
        user = f"wb-{n:03}"
        await stack.device(user)
        uid = (await stack.call("GET", f"/v1/users/{user}"))["uid"]
        arm = assign("win_back_offer", uid, ("discount", "content"), holdout=0.1).name
        arms[arm].append(user)
    batch = [
        {"type": "track", "userId": f"wb-{n:03}", "event": "User Inactive"} for n in range(USERS)
    ]
    await stack.call("POST", "/v1/batch", {"batch": batch})
    return arms


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"journey": "win_back", **labels}) or 0.0


async def test_funnel_and_readout_match_the_hand_count(stack: Stack) -> None:
    entries = _sample("nudge_journey_entries_total")
    conversions = _sample("nudge_journey_conversions_total")
    content_sent = _sample("nudge_journey_sends_total", step="offer_content", outcome="sent")
    arms = await _arms(stack)
    assert all(arms.values()), arms  # 120 users fill every arm
    converters = {arm: users[:: CONVERT_EVERY[arm]] for arm, users in arms.items()}

    async def offered() -> bool:
        stats = await stack.call("GET", "/v1/journeys/win_back/stats")
        return bool(sum(s["reached"] for s in stats["steps"]) == USERS)

    # Every offer is written (sent, or suppressed for the holdout) before anyone comes
    # back, and each converter's run holds its send's result (the message its conversion
    # credits): a row can be written before the workflow hears back from its activity.
    await eventually(offered, timeout=120)
    for users in converters.values():
        for user in users:
            await stack.wait_step(user, "wait:App Opened", journey="win_back", timeout=120)
    for users in converters.values():
        for user in users:
            await stack.track(user, "App Opened")

    async def settled() -> dict[str, Any] | None:
        stats: dict[str, Any] = await stack.call("GET", "/v1/journeys/win_back/stats")
        done = sum(len(u) for u in converters.values())
        return stats if stats["finished"].get("returned") == done else None

    stats = await eventually(settled, timeout=120)
    n = {arm: len(users) for arm, users in arms.items()}
    c = {arm: len(users) for arm, users in converters.items()}
    assert stats["entered"] == USERS and stats["open"] == USERS - sum(c.values())
    assert stats["finished"] == {"returned": sum(c.values())} and stats["exited"] == {}
    assert stats["variants"] == sorted(arms)
    steps = {s["step"]: s for s in stats["steps"]}
    # The holdout's send names the control's template and is suppressed.
    assert steps["offer_discount"]["reached"] == n["discount"] + n["holdout"]
    assert steps["offer_discount"]["sent"] == n["discount"]
    assert steps["offer_discount"]["suppressed"] == {"holdout": n["holdout"]}
    assert (steps["offer_content"]["reached"], steps["offer_content"]["sent"]) == (
        n["content"],
        n["content"],
    )
    assert "last_offer" not in steps  # nobody waited the day out
    last_touch = {(a["step"], a["last_touch"]) for a in stats["attribution"]}
    # Holdout conversions have no message to credit.
    assert last_touch == {("offer_discount", c["discount"]), ("offer_content", c["content"])}

    readout = await stack.call("GET", "/v1/experiments/win_back_offer")
    assert (readout["journey"], readout["control"]) == ("win_back", "discount")
    got = {a["variant"]: a for a in readout["arms"]}
    assert [a["variant"] for a in readout["arms"]] == ["discount", "content", "holdout"]
    for arm in arms:
        assert (got[arm]["users"], got[arm]["conversions"]) == (n[arm], c[arm])
        assert got[arm]["rate"] == pytest.approx(c[arm] / n[arm])
    control_rate = c["discount"] / n["discount"]
    assert got["content"]["lift"] == pytest.approx(c["content"] / n["content"] / control_rate - 1)
    assert got["holdout"]["holdout"] and got["content"]["p_value"] is not None
    assert any("fewer than 500" in w for w in readout["warnings"])

    arm_stats = await stack.call("GET", "/v1/journeys/win_back/stats?variant=content&since=1d")
    assert (arm_stats["entered"], arm_stats["converted"]) == (n["content"], c["content"])
    # The per-journey metrics counted the same (this process runs the router and worker).
    assert _sample("nudge_journey_entries_total") - entries == USERS
    assert _sample("nudge_journey_conversions_total") - conversions == sum(c.values())
    sent = _sample("nudge_journey_sends_total", step="offer_content", outcome="sent")
    assert sent - content_sent == n["content"]
    journeys = (await stack.call("GET", "/v1/journeys"))["items"]
    assert journeys == [
        {
            "name": "win_back",
            "entered": USERS,
            "open": USERS - sum(c.values()),
            "converted": sum(c.values()),
        }
    ]


async def test_bad_ranges_and_unknown_names_are_problems(stack: Stack) -> None:
    bad = await stack.http.get("/v1/journeys/win_back/stats?since=yesterday")
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["field"] == "since"
    assert (await stack.http.get("/v1/journeys/nope/stats")).status_code == 404
    assert (await stack.http.get("/v1/experiments/nope")).status_code == 404
    empty = await stack.call("GET", "/v1/journeys/win_back/stats")  # routed, no runs yet
    assert empty["entered"] == 0 and empty["steps"] == []
