"""engine.journey.declare: `@journey(...)` refuses misuse of the contract when the class is
defined, names journeys, and builds the registry; what only a run can show fails the run
with outcome `definition_error` (end to end on the time-skipping kit)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from datetime import time, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from temporalio import workflow

from engine import (
    ALWAYS,
    Journey,
    JourneyDefinitionError,
    JourneyEntry,
    JourneyResult,
    JourneySettings,
    journey,
)
from engine.durations import Duration
from engine.journey import registry
from engine.testing.pytest_plugin import EnvFactory
from tests.engine.journey._faulty import TDynamicWait, TTwice
from tests.kit import kit_templates
from tests.kit.clock import next_local

HEADER = """
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from engine import Goal, Journey, JourneyEntry, JourneyResult, JourneySettings, journey
"""


def define(tmp_path: Path, source: str) -> ModuleType:
    """Import `source` (after the usual imports) as a module of its own, as a journey author's
    file would be: what `@journey` refuses, it refuses while the module is imported."""
    name = f"journeys_{uuid.uuid4().hex}"
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # where inspect finds the class's source
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_listening_to_an_exit_event_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JourneyDefinitionError, match=r"listens for \['Stop'\].*exit_on"):
        define(
            tmp_path,
            """
            @journey(trigger="Go", listens=("Stop", "Ping"), exit_on=("Stop",))
            class BadListen(Journey[JourneySettings]):
                @workflow.run
                async def run(self, entry: JourneyEntry) -> JourneyResult:
                    return self.finish("done")
            """,
        )


def test_a_literal_wait_for_an_exit_event_is_refused_at_definition(tmp_path: Path) -> None:
    with pytest.raises(JourneyDefinitionError, match=r"waits for 'Stop' \(line \d+\).*exit_on"):
        define(
            tmp_path,
            """
            @journey(trigger="Go", exit_on=("Stop",))
            class WaitsForExit(Journey[JourneySettings]):
                @workflow.run
                async def run(self, entry: JourneyEntry) -> JourneyResult:
                    await self.wait_for("Stop", timeout=timedelta(hours=1))
                    return self.finish("done")
            """,
        )


def test_a_literal_wait_for_an_undeclared_event_is_refused_at_definition(
    tmp_path: Path,
) -> None:
    with pytest.raises(JourneyDefinitionError, match=r"'Ping'.*does not listen.*listens="):
        define(
            tmp_path,
            """
            @journey(trigger="Go")
            class WaitsForUndeclared(Journey[JourneySettings]):
                @workflow.run
                async def run(self, entry: JourneyEntry) -> JourneyResult:
                    await self.wait_for("Ping", timeout=timedelta(hours=1))
                    return self.finish("done")
            """,
        )


def test_waits_for_the_trigger_the_goal_and_listened_events_are_fine(tmp_path: Path) -> None:
    module = define(
        tmp_path,
        """
        @journey(trigger="Go", listens=("Ping",), goal=Goal("Bought", within=timedelta(days=1)))
        class GoodWaits(Journey[JourneySettings]):
            @workflow.run
            async def run(self, entry: JourneyEntry) -> JourneyResult:
                await self.wait_for("Go", timeout=timedelta(hours=1))
                await self.wait_for("Ping", timeout=timedelta(hours=1))
                await self.wait_for("Bought", timeout=timedelta(hours=1))
                return self.finish("done")
        """,
    )
    assert module.GoodWaits.__journey__.interests == frozenset({"Go", "Ping", "Bought"})


def test_a_name_with_a_slash_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JourneyDefinitionError, match="cannot contain '/'"):
        define(
            tmp_path,
            """
            @journey(trigger="Go", name="a/b")
            class Slashed(Journey[JourneySettings]):
                @workflow.run
                async def run(self, entry: JourneyEntry) -> JourneyResult:
                    return self.finish("done")
            """,
        )


def test_a_journey_needs_a_workflow_run(tmp_path: Path) -> None:
    with pytest.raises(JourneyDefinitionError, match=r"needs an `@workflow.run"):
        define(
            tmp_path,
            """
            @journey(trigger="Go")
            class NoRun(Journey[JourneySettings]):
                async def run(self, entry: JourneyEntry) -> JourneyResult:
                    return self.finish("done")
            """,
        )


class CartSettings(JourneySettings):
    delay: Duration = timedelta(minutes=5)


@journey(trigger="Cart Updated", key="cart_id", reentry=ALWAYS, max_history=500)
class SecondChanceCart(Journey[CartSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        return self.finish("done")


@journey(trigger="Other", name="t_twice")
class Impostor(Journey[JourneySettings]):
    """Declares a name another journey has."""

    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        return self.finish("done")


def test_the_declaration_names_the_journey_and_keeps_its_settings() -> None:
    spec = SecondChanceCart.__journey__
    assert spec.name == "second_chance_cart"  # the class name in snake case
    assert (spec.trigger, spec.key, spec.reentry, spec.max_history) == (
        "Cart Updated",
        "cart_id",
        ALWAYS,
        500,
    )
    assert SecondChanceCart.Settings is CartSettings and spec.settings is CartSettings
    assert spec.exit_on == () and spec.goal is None and spec.listens == ()


def test_the_registry_maps_names_and_refuses_two_classes_with_one_name() -> None:
    assert registry([TTwice, TDynamicWait, TTwice]) == {
        "t_twice": TTwice,
        "t_dynamic_wait": TDynamicWait,
    }
    with pytest.raises(JourneyDefinitionError, match="two journeys are named 't_twice'"):
        registry([TTwice, Impostor])


async def test_a_repeated_send_step_fails_the_run_as_a_definition_error(
    journey_env: EnvFactory,
) -> None:
    env = await journey_env(
        TTwice, start_at=next_local("UTC", time(12, 0)), templates=kit_templates()
    )
    ann = await env.user("ann")
    await env.emit(ann, "Twice Start")
    run = await env.run(ann, "t_twice")
    assert (run.status, run.outcome) == ("failed", "definition_error")
    assert [m.step for m in await env.messages(ann)] == ["twice"]  # the first send only


async def test_a_wait_for_a_name_known_only_at_run_time_is_checked_at_the_step(
    journey_env: EnvFactory,
) -> None:
    env = await journey_env(
        TDynamicWait, start_at=next_local("UTC", time(12, 0)), templates=kit_templates()
    )
    bo = await env.user("bo")
    await env.emit(bo, "Dynamic Start", {"wait_for": "Never Declared"})
    run = await env.run(bo, "t_dynamic_wait")
    assert (run.status, run.outcome) == ("failed", "definition_error")
