"""`@journey(...)`: declare a journey class as a Temporal workflow, and check its use of the
contract at import time (a wait for an exit event, a wait for an event it does not listen
to). `registry` makes the name → class map the router, the worker and the CLI share."""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from engine.journey.base import Journey
from engine.journey.triggers import Trigger
from engine.journey.vocabulary import (
    BOOKKEEPING_RETRY,
    BOOKKEEPING_TIMEOUT,
    DEFAULT_MAX_HISTORY,
    PATCH_NO_RUN_STARTED,
    Goal,
    JourneyDefinitionError,
    JourneyExited,
    JourneySpec,
    Reentry,
)
from schemas.common import RunStatus
from schemas.journeys import JourneyEntry, JourneyResult, RunFinished, RunStarted

J = TypeVar("J", bound=type[Journey[Any]])
Journeys = Mapping[str, type[Journey[Any]]]
"""Journeys by name: what the router routes to and the worker runs."""


def journey(
    *,
    trigger: str | Trigger | None = None,
    exit_on: tuple[str, ...] | list[str] = (),
    goal: Goal | None = None,
    reentry: Reentry = None,
    key: str | None = None,
    listens: tuple[str, ...] | list[str] = (),
    name: str | None = None,
    max_history: int = DEFAULT_MAX_HISTORY,
    schedule: str | None = None,
    audience: str | None = None,
    local: bool = False,
    transactional: bool = False,
) -> Callable[[J], J]:
    """Declare a journey: a Temporal workflow started by `trigger` events.

    `trigger`: an event name, or a trigger no product event carries (`Inactive`, `OnDate`,
    `Entered`, `Exited` from `engine.journey.triggers`), for which Nudge synthesizes the event.

    `reentry`: `None` = once per user ever, a `timedelta` = cool-down since the last entry,
    `ALWAYS` = every trigger after the previous run ended. `key` names an event property
    that keys the run (one run per user and key value, e.g. per cart). `listens`: the
    events the journey waits for; a run is only signalled with its trigger, `exit_on`,
    goal and `listens` events. `max_history`: history events after which a waiting run
    continues as new (Temporal may suggest it earlier).

    `schedule` (a five-field cron expression, e.g. "0 9 * * MON") with `audience` (a segment
    name) makes it recurring: each firing enters every member once (a Temporal Schedule,
    registered at worker start). `local`: the cron's time of day in each user's own zone.
    A journey without a trigger is entered only by schedules and broadcasts.

    `transactional` (OTPs, receipts, reminders the user asked for): its runs start at
    Temporal's highest task priority, so their workflow tasks and activities go ahead of a
    marketing burst queued for the same workers (each `send(..., transactional=True)` also
    takes the SMS providers' transactional lanes, whatever the journey).
    """

    def declare(cls: J) -> J:
        journey_name = name or _snake(cls.__name__)
        if "/" in journey_name:
            raise JourneyDefinitionError(f"journey names cannot contain '/': {journey_name!r}")
        waits_and_exits = set(listens) & set(exit_on)
        if waits_and_exits:
            raise JourneyDefinitionError(
                f"{journey_name} listens for {sorted(waits_and_exits)} which also end it "
                "(exit_on): a wait could never return them"
            )
        if schedule is not None:
            from engine.schedules import ScheduleError, check_cron

            try:
                check_cron(schedule, local=local)
            except ScheduleError as error:
                raise JourneyDefinitionError(f"{journey_name}: {error}") from None
            if not audience:
                raise JourneyDefinitionError(
                    f"{journey_name} has a schedule but no audience: name a segment"
                )
        elif audience is not None or local:
            raise JourneyDefinitionError(f"{journey_name}: audience= and local= go with schedule=")
        spec = JourneySpec(
            name=journey_name,
            trigger=trigger if trigger is None or isinstance(trigger, str) else trigger.synthesized,
            starts=None if trigger is None or isinstance(trigger, str) else trigger,
            exit_on=tuple(exit_on),
            goal=goal,
            reentry=reentry,
            key=key,
            settings=cls.Settings,
            listens=tuple(listens),
            max_history=max_history,
            schedule=schedule,
            audience=audience,
            local=local,
            transactional=transactional,
        )
        if not workflow.unsafe.in_sandbox():
            # The sandbox re-imports a journey's module for every run it starts; the
            # check (source + ast) ran when the worker first imported it, outside.
            _check_waits(cls, spec)
        cls.__journey__ = spec
        cls.run = _wrap_run(_find_run(cls))  # type: ignore[attr-defined]
        return workflow.defn(name=journey_name)(cls)

    return declare


def registry(classes: Iterable[type[Journey[Any]]]) -> dict[str, type[Journey[Any]]]:
    """Journeys by name; two classes declaring one name are refused."""
    found: dict[str, type[Journey[Any]]] = {}
    for cls in classes:
        spec_name = cls.__journey__.name
        if spec_name in found and found[spec_name] is not cls:
            raise JourneyDefinitionError(f"two journeys are named {spec_name!r}")
        found[spec_name] = cls
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _check_waits(cls: type, spec: JourneySpec) -> None:
    """Refuse, at import, a `self.wait_for("X")` of an exit event or of an event the
    journey does not listen to (literal names only; others are checked when they run)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return  # no source (e.g. defined in a REPL): the step checks at run time
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "wait_for"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            continue
        event = node.args[0].value
        if event in spec.exit_on:
            raise JourneyDefinitionError(
                f"{cls.__name__} waits for {event!r} (line {node.lineno}), which is in its "
                "exit_on: that event ends the run, so the wait could never return it"
            )
        if event not in spec.interests:
            raise JourneyDefinitionError(
                f"{cls.__name__} waits for {event!r} (line {node.lineno}) but does not listen "
                f"to it: add it to @journey(listens=(...))"
            )


def _find_run(cls: type) -> Callable[..., Awaitable[JourneyResult]]:
    run = getattr(cls, "run", None)
    if run is None or not hasattr(run, "__temporal_workflow_run"):
        raise JourneyDefinitionError(
            f"{cls.__name__} needs an `@workflow.run async def run(self, entry)`"
        )
    return run  # type: ignore[no-any-return]


def _wrap_run(
    run: Callable[[Any, JourneyEntry], Awaitable[JourneyResult]],
) -> Callable[[Any, JourneyEntry], Awaitable[JourneyResult]]:
    """Bracket the journey's own `run` with the `exit_on` handling and the bookkeeping."""

    @functools.wraps(run)
    async def wrapped(self: Journey[Any], entry: JourneyEntry) -> JourneyResult:
        info = workflow.info()
        if entry.carried is None and not workflow.patched(PATCH_NO_RUN_STARTED):
            # Runs recorded before the router stored run ids began with this call.
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
        failure: JourneyDefinitionError | None = None
        try:
            result = await run(self, entry)
        except JourneyExited as exited:
            result = JourneyResult(
                status=RunStatus.EXITED,
                outcome=f"exited:{exited.event.name}",
                sent=self._sent,
                converted=self._converted,
            )
        except JourneyDefinitionError as error:
            failure = error
            result = JourneyResult(
                status=RunStatus.FAILED, outcome="definition_error", sent=self._sent
            )
        # Let a goal being recorded by the signal handler finish first.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._settle()
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
        if failure is not None:
            # The run fails for good, visibly, with the journey author's mistake named.
            raise ApplicationError(str(failure), type="JourneyDefinitionError", non_retryable=True)
        return result

    workflow.run(wrapped)
    return wrapped
