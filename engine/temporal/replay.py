"""Replay recorded journey histories against the current code, and export histories.

A history replays OK when the current workflow code issues the same commands, in the same
order, as the code that wrote it, and ends with the same result. A journey edited without
`workflow.patched(...)` fails with a non-determinism error naming the history event where
the two diverged; one that issues the same commands but finishes differently (another
outcome, count or conversion) fails with both results side by side. These reports carry
the event id and a hint for the engineer.

Histories are kept as `temporal workflow show --output json` files (`{"events": [...]}`,
proto-JSON). With encryption on they hold ciphertext and replay only with the same keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google.protobuf.json_format
from google.protobuf.message import Message
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadCodec
from temporalio.runtime import Runtime
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowReplayResult,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError, _Definition

from engine.temporal.codec import CodecError

HINT_NONDETERMINISM = (
    "a step was added/removed/reordered without `workflow.patched(...)`; see CONTRIBUTING.md"
)
HINT_UNKNOWN_JOURNEY = (
    "the journey `{journey}` is not among the workflows given to the replayer "
    "(renamed or removed? old runs still need it)"
)
HINT_CODEC = (
    "the history's payloads could not be decrypted: replay with the keys that wrote it "
    "(NUDGE_ENCRYPTION_KEYS)"
)
HINT_OTHER = "the workflow task failed during replay; read the error"
HINT_RESULT = (
    "the same steps now end with another result: a behaviour change needs "
    "`workflow.patched(...)` (or `self.patched`), so recorded runs keep their outcome"
)

# sdk-core formats events as `HistoryEvent(id: 11, TimerStarted)`; other messages say
# `event id 11` / `event_id: 11` / `event 11`.
_EVENT_ID_PATTERNS = (
    re.compile(r"HistoryEvent\(id: (\d+)"),
    re.compile(r"event[ _]id[:= ]+(\d+)", re.IGNORECASE),
    re.compile(r"\bevent (\d+)\b", re.IGNORECASE),
)
# The core wraps the useful text: `...Failure { failure: Some(Failure { message: "<here>", ...`.
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_FETCH_CONCURRENCY = 8


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of replaying one run."""

    workflow_id: str
    run_id: str
    journey: str
    """Workflow type, i.e. the journey name."""
    ok: bool
    error: str | None = None
    """The replay failure's message (non-determinism or other task failure)."""
    event_id: int | None = None
    """History event id the failure points at, when the message names one."""
    hint: str | None = None


def load_history(path: Path) -> WorkflowHistory:
    """Read a `temporal workflow show --output json` file (or `WorkflowHistory.to_json()`).

    The workflow id comes from the start event when the server recorded it there, else
    from the file name (without `.json`).
    """
    text = path.read_text(encoding="utf-8")
    history = WorkflowHistory.from_json(path.stem, text)
    started = _started(history)
    if started is not None and started.workflow_id:
        history = WorkflowHistory(started.workflow_id, history.events)
    return history


def _started(history: WorkflowHistory) -> Any:
    for event in history.events[:1]:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            return event.workflow_execution_started_event_attributes
    return None


def _journey_of(history: WorkflowHistory) -> str:
    started = _started(history)
    return str(started.workflow_type.name) if started is not None else "?"


def event_id_from_error(message: str) -> int | None:
    """The first history event id named in a replay error message, or None."""
    for pattern in _EVENT_ID_PATTERNS:
        match = pattern.search(message)
        if match:
            return int(match.group(1))
    return None


def _message(error: Exception) -> str:
    text = str(error) or type(error).__name__
    inner = _CORE_MESSAGE.search(text)
    return inner.group(1) if inner else text


def _hint(error: Exception, message: str) -> str:
    if isinstance(error, NondeterminismError) or "Nondeterminism" in message:
        return HINT_NONDETERMINISM
    if isinstance(error, CodecError) or isinstance(error.__cause__, CodecError):
        return HINT_CODEC
    lowered = message.lower()
    if "nudge_encryption_keys" in lowered or "failed authentication" in lowered:
        return HINT_CODEC
    return HINT_OTHER


async def replay_histories(
    histories: Iterable[WorkflowHistory],
    *,
    workflows: Sequence[type],
    data_converter: DataConverter,
    runtime: Runtime | None = None,
    workflow_runner: WorkflowRunner | None = None,
) -> list[ReplayReport]:
    """Replay every history against `workflows`; one report per history, in input order.

    Never raises for a failing history (each gets `ok=False`). A history whose workflow type
    is not among `workflows` is reported without replaying. Activities are not executed.
    `data_converter` must carry the keys that wrote encrypted histories. `runtime`: e.g. one
    with core logging off, so the SDK's own "Failing workflow task" warnings stay quiet.
    `workflow_runner`: the worker's (`engine.app.worker.workflow_runner()`), so modules are
    imported in the sandbox exactly as on a worker.
    """
    known = {_Definition.must_from_class(cls).name for cls in workflows}
    pending = list(histories)
    by_run: dict[tuple[str, str], ReplayReport] = {}
    to_replay: list[WorkflowHistory] = []
    for history in pending:
        journey = _journey_of(history)
        if journey in known:
            to_replay.append(history)
            continue
        by_run[(history.workflow_id, history.run_id)] = ReplayReport(
            workflow_id=history.workflow_id,
            run_id=history.run_id,
            journey=journey,
            ok=False,
            error=f"workflow type {journey!r} is not registered",
            hint=HINT_UNKNOWN_JOURNEY.format(journey=journey),
        )

    async def source() -> AsyncIterator[WorkflowHistory]:
        for history in to_replay:
            yield history

    if to_replay:
        # Failures raised while replaying are reported to us, not stored: keep their text
        # readable instead of encrypting it (decoding stored failures works either way).
        converter = dataclasses.replace(
            data_converter, failure_converter_class=DefaultFailureConverter
        )
        recorder = _ResultRecorder()
        replayer = Replayer(
            workflows=workflows,
            data_converter=converter,
            runtime=runtime,
            workflow_runner=workflow_runner or SandboxedWorkflowRunner(),
            interceptors=[recorder],
        )
        async with replayer.workflow_replay_iterator(source()) as results:
            async for result in results:
                key = (result.history.workflow_id, result.history.run_id)
                report = _report(result)
                if report.ok:
                    report = await _check_result(report, result.history, recorder, converter)
                by_run[key] = report
    return [by_run[(h.workflow_id, h.run_id)] for h in pending]


class _ResultRecorder(Interceptor):
    """Keeps what each replayed run returned, to compare with what the history recorded."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        results = self.results

        class Recording(WorkflowInboundInterceptor):
            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                value = await super().execute_workflow(input)
                results[workflow.info().workflow_id] = value
                return value

        return Recording


async def _check_result(
    report: ReplayReport,
    history: WorkflowHistory,
    recorder: _ResultRecorder,
    converter: DataConverter,
) -> ReplayReport:
    """Fail the report when the run completed in the history with another result than
    the replay produced (a run still open, failed or continued has nothing to compare)."""
    last = history.events[-1] if history.events else None
    if last is None or last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        return report
    replayed = recorder.results.pop(history.workflow_id, None)
    if replayed is None:
        return report
    payloads = list(last.workflow_execution_completed_event_attributes.result.payloads)
    if not payloads:
        return report
    (recorded,) = await converter.decode(payloads, [type(replayed)])
    if _plain(recorded) == _plain(replayed):
        return report
    return dataclasses.replace(
        report,
        ok=False,
        error=f"result differs: recorded {_plain(recorded)}, replayed {_plain(replayed)}",
        event_id=last.event_id,
        hint=HINT_RESULT,
    )


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


def _report(result: WorkflowReplayResult) -> ReplayReport:
    history = result.history
    journey = _journey_of(history)
    failure = result.replay_failure
    if failure is None:
        return ReplayReport(history.workflow_id, history.run_id, journey, ok=True)
    message = _message(failure)
    return ReplayReport(
        workflow_id=history.workflow_id,
        run_id=history.run_id,
        journey=journey,
        ok=False,
        error=message,
        event_id=event_id_from_error(message),
        hint=_hint(failure, message),
    )


async def fetch_recent_histories(
    client: Client, *, journey: str, last: int
) -> list[WorkflowHistory]:
    """Histories of the `last` most recently started runs (open and closed) of `journey`.

    Uses the visibility store, which is eventually consistent (~0.1 s behind on the dev
    server) and only holds closed runs for the namespace's retention period.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", journey):
        raise ValueError(f"not a journey name: {journey!r}")
    if last <= 0:
        return []
    executions = [
        wf async for wf in client.list_workflows(f"WorkflowType = '{journey}'", limit=last)
    ]
    # SQL visibility returns an order we don't want to depend on: newest start first.
    executions.sort(key=lambda wf: wf.start_time, reverse=True)
    gate = asyncio.Semaphore(_FETCH_CONCURRENCY)

    async def fetch(workflow_id: str, run_id: str) -> WorkflowHistory:
        async with gate:
            return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()

    return list(await asyncio.gather(*(fetch(wf.id, wf.run_id) for wf in executions)))


async def export_history(
    client: Client, workflow_id: str, run_id: str | None = None, *, decode: bool = False
) -> str:
    """One run's history as JSON shaped like `temporal workflow show --output json`.

    `decode=False` (default): exactly what the server holds (ciphertext when encryption is
    on), which replays with the same keys and is safe to commit. `decode=True`: every
    payload is passed through the client's codec so the file is readable; it then holds
    whatever personal data the payloads carried, so never commit it.
    """
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    proto = History(events=history.events)
    codec = client.data_converter.payload_codec
    if decode and codec is not None:
        await _decode_payloads(proto, codec)
    as_dict = google.protobuf.json_format.MessageToDict(proto)
    return json.dumps({"events": as_dict.get("events", [])}, indent=2) + "\n"


async def _decode_payloads(message: Message, codec: PayloadCodec) -> None:
    """Decode, in place, every `Payload` anywhere inside `message`.

    Walks all set fields generically (inputs, results, signal args, memos, failures'
    encoded attributes, headers); the codec passes plain payloads through unchanged.
    """
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        is_payload = field.message_type.full_name == Payload.DESCRIPTOR.full_name
        is_map = field.message_type.GetOptions().map_entry
        if is_map:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                continue
            if value_field.message_type.full_name == Payload.DESCRIPTOR.full_name:
                for key in list(value):
                    value[key].CopyFrom((await codec.decode([value[key]]))[0])
            else:
                for key in list(value):
                    await _decode_payloads(value[key], codec)
        elif field.is_repeated:
            if is_payload:
                decoded = await codec.decode(list(value))
                del value[:]
                value.extend(decoded)
            else:
                for item in value:
                    await _decode_payloads(item, codec)
        elif is_payload:
            value.CopyFrom((await codec.decode([value]))[0])
        else:
            await _decode_payloads(value, codec)
