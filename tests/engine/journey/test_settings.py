"""A journey's settings class is made once by the worker and reused by every run's sandbox
when its class statement is plain data, and made anew per run otherwise: runs see their
settings correctly either way (an enum the journey's module defines stays that run's own)."""

from __future__ import annotations

import enum
from datetime import timedelta

from pydantic import field_validator
from temporalio import workflow
from temporalio.client import Client

from engine import Channel, Duration, Journey, JourneyEntry, JourneyResult, JourneySettings, journey
from engine.config.nudge_toml import NudgeConfig
from engine.journey import registry

with workflow.unsafe.imports_passed_through():
    from engine.journey.settings import _statement
    from tests.harness import Stack


class CommonSettings(JourneySettings):
    channel: Channel = Channel.PUSH


class PlainSettings(CommonSettings):  # its base is shared too, so it matches as well
    wait: Duration = timedelta(minutes=5)
    tags: tuple[str, ...] = ("a", "b")


class Mode(enum.StrEnum):
    SLOW = "slow"
    FAST = "fast"


class ModeSettings(JourneySettings):
    mode: Mode = Mode.SLOW


class CheckedSettings(JourneySettings):
    word: str = "quiet"

    @field_validator("word")
    @classmethod
    def _loud(cls, value: str) -> str:
        return value.upper()


def _outcome(settings: JourneySettings, *parts: object) -> str:
    return " ".join([str(id(type(settings))), *map(str, parts)])


@journey(trigger="Plain Start", name="t_settings_plain")
class TPlain(Journey[PlainSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        s = self.settings
        return self.finish(_outcome(s, s.wait == timedelta(hours=1), s.channel, *s.tags))


@journey(trigger="Mode Start", name="t_settings_mode")
class TMode(Journey[ModeSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        return self.finish(_outcome(self.settings, self.settings.mode is Mode.FAST))


@journey(trigger="Checked Start", name="t_settings_checked")
class TChecked(Journey[CheckedSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        return self.finish(_outcome(self.settings, self.settings.word))


async def test_runs_reuse_plain_settings_classes_and_rebuild_the_others(
    postgres_url: str, temporal_client: Client, task_queue: str
) -> None:
    config = NudgeConfig.model_validate(
        {
            "journeys": {
                "t_settings_plain": {"wait": "1h"},
                "t_settings_mode": {"mode": "fast"},
                "t_settings_checked": {"word": "hello"},
            }
        }
    )
    async with Stack(
        database_url=postgres_url,
        client=temporal_client,
        task_queue=task_queue,
        config=config,
        journeys=registry([TPlain, TMode, TChecked]),
    ) as s:
        for user, event in (("pia", "Plain Start"), ("mo", "Mode Start"), ("cy", "Checked Start")):
            await s.track(user, event)
        [plain] = await s.wait_closed("pia")
        [mode] = await s.wait_closed("mo")
        [checked] = await s.wait_closed("cy")
    # Plain data: the run's class is the one this module (imported outside the sandbox) made.
    assert plain["outcome"] == f"{id(PlainSettings)} True push a b"
    # An enum of the journey's own module: the sandbox made `Mode` anew, so the settings class
    # was made anew with it, and the run's value is its own `Mode.FAST`.
    mode_class, fast = mode["outcome"].split()
    assert (mode_class != str(id(ModeSettings)), fast) == (True, "True")
    # A validator: made anew for the run, and the validator ran there.
    checked_class, word = checked["outcome"].split()
    assert (checked_class != str(id(CheckedSettings)), word) == (True, "HELLO")


def test_a_statement_matches_only_the_same_plain_body_and_the_same_annotations() -> None:
    namespace = {
        "__module__": __name__,
        "__qualname__": "S",
        "__annotations__": {"mode": "Mode", "wait": "Duration"},
        "mode": Mode.SLOW,
        "wait": timedelta(minutes=1),
    }
    first = _statement((JourneySettings,), namespace)
    assert first is not None
    assert first.same_as(_statement((JourneySettings,), dict(namespace)))  # type: ignore[arg-type]

    class OtherMode(enum.StrEnum):  # a re-made `Mode`: equal names, another class
        SLOW = "slow"

    remade = {**namespace, "mode": OtherMode.SLOW}
    assert not first.same_as(_statement((JourneySettings,), remade))  # type: ignore[arg-type]
    longer = {**namespace, "wait": timedelta(minutes=2)}
    assert not first.same_as(_statement((JourneySettings,), longer))  # type: ignore[arg-type]
    assert not first.same_as(_statement((PlainSettings,), namespace))  # type: ignore[arg-type]
    # Not plain data, or an annotation that does not resolve: no statement to share.
    assert _statement((JourneySettings,), {**namespace, "check": lambda: None}) is None
    unresolved = {**namespace, "__annotations__": {"mode": "Missing"}}
    assert _statement((JourneySettings,), unresolved) is None
