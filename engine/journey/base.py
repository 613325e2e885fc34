"""The `Journey` base class: the steps journeys are written with.

A journey is a Temporal workflow; this module runs inside the workflow sandbox, so it only
orchestrates: every I/O is an activity, called by name so no database code is imported.
Steps (`wait_for`, `sleep`, `sleep_until_local`, `send`) end the run at once when an
`exit_on` event arrives; nothing is sent after it. A long run continues as new while it
waits (Temporal suggests it, or the history passed the journey's `max_history`), carrying
compact state; see `engine.journey.journal`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from temporalio import workflow
from temporalio.exceptions import ActivityError

from engine import ids
from engine.journey import split as splitting
from engine.journey.inbox import Inbox, Where
from engine.journey.journal import Journal
from engine.journey.settings import JourneySettings
from engine.journey.vocabulary import (
    BOOKKEEPING_RETRY,
    BOOKKEEPING_TIMEOUT,
    DELIVERY_RETRY,
    EVENT_SIGNAL,
    PATCH_RECORD_VARIANT,
    PATCH_SMS_LANES,
    PATCH_WAIT_AFTER_ANSWER,
    PATCH_WAIT_RULE,
    SA_STEP,
    JourneyDefinitionError,
    JourneyExited,
    JourneySpec,
    JourneyState,
)
from engine.localtime import local_instant, next_local_time
from schemas.common import Channel, RunStatus, SendStatus
from schemas.events import JourneyEvent
from schemas.journeys import (
    CarriedState,
    DeliverOutcome,
    DeliverRequest,
    GoalReached,
    JourneyEntry,
    JourneyResult,
    SendResult,
    SmsLanes,
    SmsLanesRequest,
    StepRecord,
    UserZone,
    UserZoneRequest,
    VariantAssigned,
)

S = TypeVar("S", bound=JourneySettings)


class Journey(Generic[S]):
    """Base class of every journey: `class AbandonedCart(Journey[AbandonedCartSettings])`,
    declared with `@journey(...)`. `self.settings` is the settings model, typed."""

    Settings: ClassVar[type[JourneySettings]] = JourneySettings
    """The settings model, taken from the generic argument (`Journey[MySettings]`)."""
    __journey__: ClassVar[JourneySpec]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Journey):
                (argument,) = get_args(base) or (JourneySettings,)
                if isinstance(argument, type) and issubclass(argument, JourneySettings):
                    cls.Settings = argument

    @workflow.init
    def __init__(self, entry: JourneyEntry) -> None:
        self.entry = entry
        self.user_id = entry.user_id
        self.settings: S = type(self).Settings.model_validate(entry.settings)  # type: ignore[assignment]
        carried = entry.carried or CarriedState(
            entered_at=workflow.now(), seen=[entry.event.message_id]
        )
        self._carried = carried
        # The trigger is the entry, not something to wait for: it is marked as seen.
        self._inbox = Inbox(seen=carried.seen, pending=carried.pending)
        self._inbox.received = carried.received
        self._inbox.after_answer = carried.wait_keeps_after_answer
        self._journal = Journal(carried.steps)
        self._entered_at = carried.entered_at
        self._sent = carried.sent
        self._last_message_id = carried.last_message_id
        self._converted = carried.converted
        self._variant = carried.variant
        self._holdout = carried.holdout
        # A continued run's arm was recorded by the run it continues.
        self._variant_recorded = carried.variant is not None
        self._bookkeeping: list[workflow.ActivityHandle[None]] = []
        self._exit: JourneyEvent | None = None
        self._step = "entered"
        self._step_ended_at = 0  # history length; the pre-patch wait rule counts from it
        self._wait_rule_known = entry.carried is not None

    # -- signals and queries -------------------------------------------------------------

    @workflow.signal(name=EVENT_SIGNAL)
    async def _on_event(self, event: JourneyEvent) -> None:
        """Every event of the user the journey listens to. Duplicates are ignored."""
        if not self._inbox.add(event, history_length=workflow.info().get_current_history_length()):
            return
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
            events_seen=self._inbox.received,
            continued=self._carried.continued,
        )

    # -- the steps journeys use ----------------------------------------------------------

    async def wait_for(
        self, event: str, *, timeout: timedelta | None = None, where: Where = None
    ) -> JourneyEvent | None:
        """The first `event` this wait may see (see `engine.journey.inbox`), or None on timeout.

        `where` filters on properties: a mapping of equal values, or a predicate. The event
        must be one the journey listens to (`listens=`, trigger or goal), never an `exit_on`
        event: that one ends the run instead.
        """
        self._check_wait(event)
        await self._settle()
        self._choose_wait_rule()
        record = self._journal.recorded("wait", event)
        if record is not None and record.done:
            return record.event
        if record is None:
            until = None if timeout is None else workflow.now() + timeout
            record = self._journal.start(StepRecord(kind="wait", name=event, until=until))
        self._set_step(f"wait:{event}")
        self._inbox.wait_started(event, where)
        found: list[JourneyEvent] = []

        def check() -> bool:
            if not found:
                taken = self._inbox.take(event, where, step_ended_at=self._step_ended_at)
                if taken is not None:
                    found.append(taken)
            return bool(found)

        await self._wait(check, record.until, resumable=True)
        record.done, record.event = True, found[0] if found else None
        self._inbox.wait_ended()
        self._end_step()
        return record.event

    async def sleep(self, duration: timedelta) -> None:
        """A durable timer; returns early only by ending the run (`exit_on`)."""
        await self._settle()
        record = self._journal.recorded("sleep", "sleep")
        if record is not None and record.done:
            return
        if record is None:
            record = self._journal.start(
                StepRecord(kind="sleep", name="sleep", until=workflow.now() + duration)
            )
        self._set_step("sleep")
        await self._wait(lambda: False, record.until, resumable=True)
        record.done = True
        self._end_step()

    async def sleep_until_local(self, when: time | date | datetime, at: time | None = None) -> None:
        """Sleep until a moment on the user's local clock (their IANA zone, DST-correct).

        `sleep_until_local(time(10))`: the next 10:00. `sleep_until_local(day, time(9))`:
        09:00 on the local date `day` (a `date`, or an aware date-time's local date).
        `sleep_until_local(datetime)`: an aware instant, or a naive wall time in the
        user's zone. A moment already past returns at once.
        """
        await self._settle()
        if isinstance(when, time):
            name = when.isoformat("minutes")  # the name recorded histories carry
        else:
            name = when.isoformat() + ("" if at is None else f"@{at.isoformat('minutes')}")
        record = self._journal.recorded("sleep_until", name)
        if record is not None and record.done:
            return
        if record is None:
            aware = isinstance(when, datetime) and when.tzinfo is not None and at is None
            zone = "UTC" if aware else await self._zone()
            if isinstance(when, time):
                until = next_local_time(workflow.now(), when, zone)
            else:
                until = local_instant(when, at, zone)
            record = self._journal.start(StepRecord(kind="sleep_until", name=name, until=until))
        self._set_step(f"sleep_until:{name}")
        await self._wait(lambda: False, record.until, resumable=True)
        record.done = True
        self._end_step()

    async def _zone(self) -> str:
        zone: UserZone = await workflow.execute_local_activity(
            "nudge.user_zone",
            UserZoneRequest(user_id=self.user_id),
            result_type=UserZone,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        return zone.timezone

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

        `step` names the send (default: the template); each send of a run needs its own
        name, so give `step=` when a template is sent twice. Returns `sent`, `suppressed`
        (with a reason; `holdout` for a run in an experiment's holdout) or `failed`; a
        message held by quiet hours or a cap is sent later, with `deferred=True`.
        """
        self._raise_if_exited()
        await self._settle()
        name = step or template
        record = self._journal.recorded("send", name)
        if record is not None and record.send is not None:
            return record.send
        if record is None:
            if name in self._journal.names("send"):
                raise JourneyDefinitionError(
                    f"send step {name!r} ran twice in one run: give each send its own step= name"
                )
            record = self._journal.start(StepRecord(kind="send", name=name))
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
            run_id=info.first_execution_run_id,
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
            await self._wait(lambda: False, outcome.defer_until)
            self._raise_if_exited()
            request = request.model_copy(
                update={"deferrals": request.deferrals + 1, "at": workflow.now()}
            )
        result = outcome.result.model_copy(update={"deferred": deferred})
        if result.status is SendStatus.SENT:
            self._sent += 1
            if result.message_ids:
                self._last_message_id = result.message_ids[-1]
        record.done, record.send = True, result
        self._end_step()
        return result

    def split(
        self,
        experiment: str,
        variants: Mapping[str, float] | tuple[str, ...],
        *,
        holdout: float = 0.0,
    ) -> splitting.Variant:
        """Assign this run's arm deterministically from (experiment, user).

        `variants` maps arm names to weights (or is a tuple of equal-weight names). With a
        `holdout` fraction, some users get the arm `"holdout"`: `send` suppresses their
        messages (reason `holdout`) and their goal is still measured. Use
        `variant.pick(arm=value, ...)` to choose a template per arm.
        """
        variant = splitting.assign(experiment, self.user_id, variants, holdout=holdout)
        self._variant = variant.name
        self._holdout = variant.in_holdout
        # Runs recorded before this patch told the arm only when they ended; new runs
        # record it now, so stats see open runs' arms. `split` is not async: the local
        # activity is started here and awaited by the next step (`_settle`).
        if not self._variant_recorded and workflow.patched(PATCH_RECORD_VARIANT):
            self._variant_recorded = True
            info = workflow.info()
            self._bookkeeping.append(
                workflow.start_local_activity(
                    "nudge.variant_assigned",
                    VariantAssigned(
                        workflow_id=info.workflow_id,
                        run_id=info.first_execution_run_id,
                        journey=type(self).__journey__.name,
                        experiment=experiment,
                        variant=variant.name,
                        arms=list(variant.arms),
                        holdout=holdout,
                        at=workflow.now(),
                    ),
                    start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                    retry_policy=BOOKKEEPING_RETRY,
                )
            )
        return variant

    def patched(self, change_id: str) -> bool:
        """`workflow.patched(change_id)`, remembered across continue-as-new so a continued
        run takes the branch its first run took (see CONTRIBUTING, "Changing a journey")."""
        record = self._journal.recorded("patch", change_id)
        if record is not None:
            return bool(record.flag)
        decided = workflow.patched(change_id)
        self._journal.start(StepRecord(kind="patch", name=change_id, done=True, flag=decided))
        return decided

    def finish(self, outcome: str) -> JourneyResult:
        """The result to return from `run`: `return self.finish("reminded")`."""
        return JourneyResult(
            status=RunStatus.COMPLETED,
            outcome=outcome,
            sent=self._sent,
            converted=self._converted,
        )

    # -- internals ---------------------------------------------------------------------

    def _check_wait(self, event: str) -> None:
        spec = type(self).__journey__
        if event in spec.exit_on:
            raise JourneyDefinitionError(
                f"{spec.name} waits for {event!r}, which is in its exit_on: that event ends "
                "the run, so the wait can never return it"
            )
        if event not in spec.interests:
            raise JourneyDefinitionError(
                f"{spec.name} waits for {event!r} but does not listen to it: "
                f"add it to @journey(listens=(...))"
            )

    def _choose_wait_rule(self) -> None:
        """Runs recorded before the wait rule changed replay with the old rule."""
        if not self._wait_rule_known:
            self._wait_rule_known = True
            self._inbox.legacy = not workflow.patched(PATCH_WAIT_RULE)
            self._inbox.after_answer = not self._inbox.legacy and workflow.patched(
                PATCH_WAIT_AFTER_ANSWER
            )

    async def _settle(self) -> None:
        """Wait for bookkeeping started by a synchronous step (`split`)."""
        while self._bookkeeping:
            await self._bookkeeping.pop(0)

    def _raise_if_exited(self) -> None:
        if self._exit is not None:
            raise JourneyExited(self._exit)

    async def _deliver(self, request: DeliverRequest) -> DeliverOutcome:
        """The delivery activity; an SMS goes through its lanes (`engine.delivery.lanes`):
        each provider's task queue in route order, the next when one is skipped."""
        if request.channel is Channel.SMS and self.patched(PATCH_SMS_LANES):
            lanes: SmsLanes = await workflow.execute_local_activity(
                "nudge.sms_lanes",
                SmsLanesRequest(user_id=self.user_id, transactional=request.transactional),
                result_type=SmsLanes,
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=BOOKKEEPING_RETRY,
            )
            pairs = list(zip(lanes.providers, lanes.queues, strict=True))
            for index, (provider, queue) in enumerate(pairs):
                last = index == len(pairs) - 1
                lane = request.model_copy(update={"provider": provider, "last_lane": last})
                outcome = await self._deliver_on(lane, task_queue=queue)
                if not outcome.skipped:
                    return outcome
        return await self._deliver_on(request)

    async def _deliver_on(
        self, request: DeliverRequest, *, task_queue: str | None = None
    ) -> DeliverOutcome:
        """The delivery activity, cancelled if an `exit_on` event arrives while it runs
        (e.g. while it retries against a provider that is down)."""
        handle = workflow.start_activity(
            "nudge.deliver",
            request,
            task_queue=task_queue,
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

    async def _wait(
        self, condition: Callable[[], bool], until: datetime | None, *, resumable: bool = False
    ) -> None:
        """Wait for `condition`, an exit, or `until` (UTC), whichever comes first. A
        `resumable` wait continues the run as new when its history has grown long."""
        self._raise_if_exited()
        if condition():
            return
        timeout = None if until is None else until - workflow.now()
        if timeout is not None and timeout <= timedelta(0):
            return

        def done() -> bool:
            return self._exit is not None or condition() or (resumable and self._history_full())

        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(done, timeout=timeout)
        self._raise_if_exited()
        if resumable and self._history_full() and not condition():
            await self._continue_as_new()

    def _history_full(self) -> bool:
        info = workflow.info()
        limit = type(self).__journey__.max_history
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= limit

    async def _continue_as_new(self) -> None:
        """Hand the run over to a fresh one with the same workflow id; never returns."""
        # A goal being recorded by the signal handler finishes first.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._settle()
        self._raise_if_exited()
        self._choose_wait_rule()  # decided once per run, so the continuation keeps it
        carried = CarriedState(
            entered_at=self._entered_at,
            steps=self._journal.steps(),
            seen=self._inbox.seen(),
            pending=self._inbox.pending(),
            sent=self._sent,
            last_message_id=self._last_message_id,
            converted=self._converted,
            variant=self._variant,
            holdout=self._holdout,
            received=self._inbox.received,
            continued=self._carried.continued + 1,
            wait_keeps_after_answer=self._inbox.after_answer,
        )
        workflow.continue_as_new(self.entry.model_copy(update={"carried": carried}))

    def _set_step(self, step: str) -> None:
        self._step = step
        if self.entry.search_attributes:
            workflow.upsert_search_attributes([SA_STEP.value_set(step[:200])])

    def _end_step(self) -> None:
        self._step_ended_at = workflow.info().get_current_history_length()
