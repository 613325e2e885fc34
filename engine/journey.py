"""The journey contract: `Journey` base class and `@journey` decorator.

A journey is a Temporal workflow. This module runs inside the workflow sandbox, so it only
orchestrates: every I/O is an activity, called by name so no database code is imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any, ClassVar, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

from engine import ids
from engine.journey_types import (
    ALWAYS,
    BOOKKEEPING_RETRY,
    BOOKKEEPING_TIMEOUT,
    DELIVERY_RETRY,
    EVENT_SIGNAL,
    SA_STEP,
    Goal,
    JourneyExited,
    JourneySettings,
    JourneySpec,
    JourneyState,
    Reentry,
)
from engine.localtime import next_local_time
from schemas.common import Channel, RunStatus, SendStatus
from schemas.events import JourneyEvent
from schemas.journeys import (
    DeliverOutcome,
    DeliverRequest,
    GoalReached,
    JourneyEntry,
    JourneyResult,
    RunFinished,
    RunStarted,
    SendResult,
    UserZone,
    UserZoneRequest,
)


@dataclass
class _Received:
    event: JourneyEvent
    history_length: int


class Journey:
    """Base class of every journey. Subclass it, declare it with `@journey(...)`.

    Steps (`wait_for`, `sleep`, `sleep_until_local`, `send`) end the run at once when an
    `exit_on` event arrives; nothing is sent after it.
    """

    Settings: ClassVar[type[JourneySettings]] = JourneySettings
    __journey__: ClassVar[JourneySpec]

    @workflow.init
    def __init__(self, entry: JourneyEntry) -> None:
        self.entry = entry
        self.user_id = entry.user_id
        self.settings: Any = type(self).Settings.model_validate(entry.settings)
        self._entered_at = workflow.now()
        self._inbox: list[_Received] = []
        # The trigger is the entry, not something to wait for: mark it as seen.
        self._seen: set[str] = {entry.event.message_id}
        self._consumed: set[int] = set()
        self._step_end_length = 0
        self._exit: JourneyEvent | None = None
        self._step = "entered"
        self._step_counts: dict[str, int] = {}
        self._sent = 0
        self._last_message_id: str | None = None
        self._converted = False
        self._variant: str | None = None
        self._holdout = False

    # -- signals and queries -------------------------------------------------------------

    @workflow.signal(name=EVENT_SIGNAL)
    async def _on_event(self, event: JourneyEvent) -> None:
        """Every event of the user. Duplicates (same `message_id`) are ignored."""
        if event.message_id in self._seen:
            return
        self._seen.add(event.message_id)
        self._inbox.append(_Received(event, workflow.info().get_current_history_length()))
        spec = type(self).__journey__
        # A keyed run (one per cart) only exits or converts on events about its own key;
        # an event that names no key speaks for all of the user's runs.
        key = event.properties.get(spec.key) if spec.key else None
        ours = key is None or str(key) == self.entry.key
        # The exit takes effect before anything else is awaited: nothing may be sent after it.
        if ours and event.name in spec.exit_on and self._exit is None:
            self._exit = event
        if (
            ours
            and spec.goal is not None
            and event.name == spec.goal.event
            and not self._converted
            and workflow.now() - self._entered_at <= spec.goal.within
        ):
            self._converted = True
            await workflow.execute_local_activity(
                "nudge.goal_reached",
                GoalReached(
                    workflow_id=workflow.info().workflow_id,
                    run_id=workflow.info().first_execution_run_id,
                    journey=spec.name,
                    user_id=self.user_id,
                    event=event,
                    last_message_id=self._last_message_id,
                    at=workflow.now(),
                ),
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=BOOKKEEPING_RETRY,
            )

    @workflow.query(name="state")
    def _state(self) -> JourneyState:
        return JourneyState(
            journey=type(self).__journey__.name,
            user_id=self.user_id,
            step=self._step,
            sent=self._sent,
            converted=self._converted,
            variant=self._variant,
            events_seen=len(self._inbox),
        )

    # -- the steps journeys use ----------------------------------------------------------

    async def wait_for(
        self,
        event: str,
        *,
        timeout: timedelta | None = None,
        where: Mapping[str, Any] | Callable[[JourneyEvent], bool] | None = None,
    ) -> JourneyEvent | None:
        """The first `event` received since the previous step ended, or `None` on timeout.

        `where` filters on properties: a mapping of equal values, or a predicate.
        """
        self._set_step(f"wait:{event}")
        found: list[JourneyEvent] = []

        def matches(candidate: JourneyEvent) -> bool:
            if candidate.name != event:
                return False
            if where is None:
                return True
            if callable(where):
                return bool(where(candidate))
            return all(candidate.properties.get(k) == v for k, v in where.items())

        def check() -> bool:
            for index, received in enumerate(self._inbox):
                if index in self._consumed or received.history_length < self._step_end_length:
                    continue
                if matches(received.event):
                    self._consumed.add(index)
                    found.append(received.event)
                    return True
            return False

        await self._wait(check, timeout)
        self._end_step()
        return found[0] if found else None

    async def sleep(self, duration: timedelta) -> None:
        """A durable timer; returns early only by ending the run (`exit_on`)."""
        self._set_step("sleep")
        await self._wait(lambda: False, duration)
        self._end_step()

    async def sleep_until_local(self, at: time) -> None:
        """Sleep until the next `at` on the user's local clock (their IANA zone, DST-correct)."""
        zone: UserZone = await workflow.execute_local_activity(
            "nudge.user_zone",
            UserZoneRequest(user_id=self.user_id),
            result_type=UserZone,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        now = workflow.now()
        self._set_step(f"sleep_until:{at.isoformat('minutes')}")
        await self._wait(lambda: False, next_local_time(now, at, zone.timezone) - now)
        self._end_step()

    async def send(
        self,
        template: str,
        *,
        channel: Channel,
        transactional: bool = False,
        step: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> SendResult:
        """Run the policy gate, then deliver; never sends twice for the same step.

        Returns `sent`, `suppressed` (with a reason) or `failed`; a message held by quiet hours
        or a cap is sent later and comes back with `deferred=True`.
        """
        self._raise_if_exited()
        name = step or template
        count = self._step_counts.get(name, 0) + 1
        self._step_counts[name] = count
        if count > 1:
            name = f"{name}#{count}"
        info = workflow.info()
        request = DeliverRequest(
            idempotency_key=ids.send_idempotency_key(
                info.workflow_id, info.first_execution_run_id, name
            ),
            user_id=self.user_id,
            journey=type(self).__journey__.name,
            workflow_id=info.workflow_id,
            step=name,
            template=template,
            channel=channel,
            transactional=transactional,
            context=dict(context or {}),
            entry_event=self.entry.event,
            settings=self.settings.model_dump(mode="json"),
            holdout=self._holdout,
            variant=self._variant,
            at=workflow.now(),
        )
        self._set_step(f"send:{name}")
        deferred = False
        while True:
            outcome = await self._deliver(request)
            if outcome.result is not None:
                break
            # Held by quiet hours or a cap: a durable timer, then the gate runs again.
            assert outcome.defer_until is not None
            deferred = True
            self._set_step(f"deferred:{outcome.defer_reason or 'policy'}")
            await self._wait(lambda: False, outcome.defer_until - workflow.now())
            self._raise_if_exited()
            request = request.model_copy(
                update={"deferrals": request.deferrals + 1, "at": workflow.now()}
            )
        result = outcome.result.model_copy(update={"deferred": deferred})
        if result.status is SendStatus.SENT:
            self._sent += 1
            if result.message_ids:
                self._last_message_id = result.message_ids[-1]
        self._end_step()
        return result

    async def _deliver(self, request: DeliverRequest) -> DeliverOutcome:
        """The delivery activity, cancelled if an `exit_on` event arrives while it runs
        (e.g. while it retries against a provider that is down)."""
        handle = workflow.start_activity(
            "nudge.deliver",
            request,
            result_type=DeliverOutcome,
            start_to_close_timeout=timedelta(minutes=2),
            # A send heartbeats; a crashed worker's send is retried within seconds.
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=DELIVERY_RETRY,
        )
        await workflow.wait_condition(lambda: handle.done() or self._exit is not None)
        if not handle.done():
            handle.cancel()
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await handle
            self._raise_if_exited()
        result: DeliverOutcome = await handle
        return result

    def split(
        self,
        experiment: str,
        variants: Mapping[str, float] | tuple[str, ...],
        *,
        holdout: float = 0.0,
    ) -> str:
        """Assign a variant deterministically from (experiment, user).

        `variants` maps names to weights (or is a tuple of equal-weight names). With a
        `holdout` fraction, some users get the variant `"holdout"`: their sends are
        suppressed with reason `holdout`, and their goal is still measured.
        """
        weights = dict.fromkeys(variants, 1.0) if isinstance(variants, tuple) else dict(variants)
        point = int(hashlib.sha256(f"{experiment}:{self.user_id}".encode()).hexdigest()[:15], 16)
        fraction = point / float(16**15)
        if fraction < holdout:
            chosen = "holdout"
            self._holdout = True
        else:
            scaled = (fraction - holdout) / (1 - holdout) * sum(weights.values())
            chosen = list(weights)[-1]
            for name, weight in weights.items():
                if scaled < weight:
                    chosen = name
                    break
                scaled -= weight
        self._variant = chosen
        return chosen

    def finish(self, outcome: str) -> JourneyResult:
        """The result to return from `run`: `return self.finish("reminded")`."""
        return JourneyResult(
            status=RunStatus.COMPLETED,
            outcome=outcome,
            sent=self._sent,
            converted=self._converted,
        )

    # -- internals ---------------------------------------------------------------------

    def _raise_if_exited(self) -> None:
        if self._exit is not None:
            raise JourneyExited(self._exit)

    async def _wait(self, condition: Callable[[], bool], timeout: timedelta | None) -> None:
        """Wait for `condition`, an exit, or `timeout`, whichever comes first."""
        self._raise_if_exited()
        if condition():
            return
        if timeout is not None and timeout <= timedelta(0):
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._exit is not None or condition(), timeout=timeout
            )
        self._raise_if_exited()

    def _set_step(self, step: str) -> None:
        self._step = step
        if self.entry.search_attributes:
            workflow.upsert_search_attributes([SA_STEP.value_set(step[:200])])

    def _end_step(self) -> None:
        self._step_end_length = workflow.info().get_current_history_length()


J = TypeVar("J", bound=type[Journey])


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


JOURNEYS: dict[str, type[Journey]] = {}
"""Every journey class declared with `@journey`, by name."""


def journey(
    *,
    trigger: str,
    exit_on: tuple[str, ...] | list[str] = (),
    goal: Goal | None = None,
    reentry: Reentry = None,
    key: str | None = None,
    name: str | None = None,
) -> Callable[[J], J]:
    """Declare a journey: a Temporal workflow started by `trigger` events.

    `reentry`: `None` = once per user ever, a `timedelta` = cool-down since the last entry,
    `ALWAYS` = every trigger after the previous run ended. `key` names an event property
    that keys the run (one run per user and key value, e.g. per cart).
    """

    def declare(cls: J) -> J:
        journey_name = name or _snake(cls.__name__)
        run = _find_run(cls)
        spec = JourneySpec(
            name=journey_name,
            trigger=trigger,
            exit_on=tuple(exit_on),
            goal=goal,
            reentry=reentry,
            key=key,
            settings=cls.Settings,
        )
        cls.__journey__ = spec
        cls.run = _wrap_run(run)  # type: ignore[attr-defined]
        defined = workflow.defn(name=journey_name)(cls)
        JOURNEYS[journey_name] = defined
        return defined

    return declare


def _find_run(cls: type[Journey]) -> Callable[..., Awaitable[JourneyResult]]:
    run = getattr(cls, "run", None)
    if run is None or not hasattr(run, "__temporal_workflow_run"):
        raise TypeError(f"{cls.__name__} needs an `@workflow.run async def run(self, entry)`")
    return run  # type: ignore[no-any-return]


def _wrap_run(
    run: Callable[[Any, JourneyEntry], Awaitable[JourneyResult]],
) -> Callable[[Any, JourneyEntry], Awaitable[JourneyResult]]:
    """Bracket the journey's own `run` with bookkeeping and the `exit_on` handling."""

    @functools.wraps(run)
    async def wrapped(self: Journey, entry: JourneyEntry) -> JourneyResult:
        info = workflow.info()
        await workflow.execute_local_activity(
            "nudge.run_started",
            RunStarted(
                workflow_id=info.workflow_id,
                run_id=info.first_execution_run_id,
                journey=type(self).__journey__.name,
                user_id=self.user_id,
            ),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        try:
            result = await run(self, entry)
        except JourneyExited as exited:
            result = JourneyResult(
                status=RunStatus.EXITED,
                outcome=f"exited:{exited.event.name}",
                sent=self._sent,
                converted=self._converted,
            )
        # Let a goal being recorded by the signal handler finish first.
        await workflow.wait_condition(workflow.all_handlers_finished)
        result = result.model_copy(update={"converted": self._converted})
        await workflow.execute_local_activity(
            "nudge.run_finished",
            RunFinished(
                workflow_id=info.workflow_id,
                run_id=info.first_execution_run_id,
                status=result.status,
                outcome=result.outcome,
                step=self._step,
                variant=self._variant,
                at=workflow.now(),
            ),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        return result

    workflow.run(wrapped)
    return wrapped


__all__ = [
    "ALWAYS",
    "EVENT_SIGNAL",
    "JOURNEYS",
    "SA_STEP",
    "Goal",
    "Journey",
    "JourneyExited",
    "JourneySettings",
    "JourneySpec",
    "JourneyState",
    "Reentry",
    "journey",
]
