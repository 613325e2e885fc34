"""`nudge worker`: every journey, the activities, and the channel providers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from enum import StrEnum
from typing import Any

import prometheus_client
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.broadcasts import BroadcastActivities
from activities.deliver import DeliveryActivities
from activities.runs import RunActivities
from activities.sweep import SweepActivities
from activities.webhooks import WebhookActivities
from engine.app.heap import settle
from engine.app.journeys import check_overrides, shipped_journeys, template_store
from engine.app.providers import build_providers
from engine.app.segments import known_segments
from engine.app.temporal import sdk_runtime
from engine.channels.registry import Providers
from engine.config.nudge_toml import ConfigError
from engine.config.settings import Settings, require_encryption
from engine.context import Context
from engine.delivery import Deliverer
from engine.delivery.lanes import lane_queue, lane_rate
from engine.delivery.templates import TemplateStore
from engine.journey import Inactive, Journey, Journeys, JourneySpec, OnDate
from engine.observability.metrics import REGISTRY
from engine.segments import Segments
from engine.store.data_keys import StoreUserKeys
from engine.system.broadcast import Broadcast
from engine.system.sweep import DueTriggerSweep
from engine.system.sweep import workflow_id as sweep_workflow_id
from engine.system.webhooks import WebhookDelivery
from engine.temporal import schedules
from engine.temporal.client import connect
from engine.temporal.entry import transactional_queue
from schemas.triggers import SweepState

# Deterministic modules shared by all runs instead of re-imported per run (the sandbox's
# main CPU and memory cost); journeys in `workflows/` stay sandboxed.
PASSTHROUGH = ("engine", "schemas", "activities", "liquid", "yaml")
SYSTEM_WORKFLOWS = (WebhookDelivery, DueTriggerSweep, Broadcast)
"""Nudge's own workflows, run beside the journeys."""


class Role(StrEnum):
    """What a worker process serves (`nudge worker --only ROLE`; default: both)."""

    JOURNEYS = "journeys"
    """Every journey on the base queue, Nudge's own workflows, the marketing SMS lanes."""
    TRANSACTIONAL = "transactional"
    """The transactional journeys on `<queue>.tx` and the transactional SMS lanes: run
    workers of their own for them, and a marketing burst never takes their CPU."""


ROLES = frozenset(Role)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every journey runs in, on workers and in replays alike."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def build_worker(
    client: Client,
    context: Context,
    *,
    providers: Providers,
    task_queue: str | None = None,
    journeys: Journeys | None = None,
    templates: TemplateStore | None = None,
    max_cached_workflows: int = 1000,
    segments: Segments | None = None,
    lanes_of: str | None = None,
) -> Worker:
    """A worker for `task_queue` (default: the settings') running `journeys` (default: all);
    its SMS take the lanes of `lanes_of` (default: `task_queue`)."""
    deliverer = Deliverer(
        sessions=context.sessions,
        config=context.config,
        providers=providers,
        templates=templates or template_store(),
        link_base=context.settings.link_base_url,
    )
    delivery = DeliveryActivities(deliverer, lanes_of=lanes_of)
    bookkeeping = RunActivities(
        sessions=context.sessions, config=context.config, version=context.settings.build_id
    )
    classes: Sequence[type[Journey[Any]]] = list((journeys or shipped_journeys()).values())
    hooks = WebhookActivities(sessions=context.sessions, config=context.config)
    sweep = SweepActivities(
        sessions=context.sessions,
        config=context.config,
        specs=[cls.__journey__ for cls in classes],
    )
    queue = task_queue or context.settings.task_queue
    entries = BroadcastActivities(
        sessions=context.sessions,
        config=context.config,
        client=client,
        task_queue=queue,
        journeys={cls.__journey__.name: cls.__journey__ for cls in classes},
        segments=segments or known_segments(context.config),
        version=context.settings.build_id,
    )
    return Worker(
        client,
        task_queue=queue,
        workflows=[*classes, *SYSTEM_WORKFLOWS],
        activities=[
            delivery.deliver,
            delivery.sms_lanes,
            bookkeeping.run_started,
            bookkeeping.run_finished,
            bookkeeping.goal_reached,
            bookkeeping.variant_assigned,
            bookkeeping.user_zone,
            hooks.deliver,
            hooks.gave_up,
            sweep.sweep,
            entries.begin,
            entries.pages,
            entries.mark,
        ],
        workflow_runner=workflow_runner(),
        max_cached_workflows=max_cached_workflows,
        max_concurrent_workflow_task_polls=10,
        nonsticky_to_sticky_poll_ratio=0.5,
    )


def build_workers(
    client: Client,
    context: Context,
    *,
    providers: Providers,
    task_queue: str | None = None,
    journeys: Journeys | None = None,
    templates: TemplateStore | None = None,
    segments: Segments | None = None,
    roles: Collection[Role] = ROLES,
) -> list[Worker]:
    """Every worker a Nudge worker process runs for `roles`: the journeys' (`build_worker`);
    the transactional journeys' on `<queue>.tx` (`engine.temporal.entry.journey_queue`),
    with slots of their own, so an OTP's workflow tasks never wait for a marketing burst's;
    and the SMS lanes of each (`lane_workers`)."""
    queue = task_queue or context.settings.task_queue
    every = journeys or shipped_journeys()
    transactional = {n: c for n, c in every.items() if c.__journey__.transactional}
    served = [(queue, every)] if Role.JOURNEYS in roles else []
    if transactional and Role.TRANSACTIONAL in roles:
        served.append((transactional_queue(queue), transactional))
    workers = [
        build_worker(
            client,
            context,
            providers=providers,
            task_queue=name,
            journeys=classes,
            templates=templates,
            segments=segments,
            lanes_of=queue,
        )
        for name, classes in served
    ]
    lanes = [role is Role.TRANSACTIONAL for role in Role if role in roles]
    return workers + lane_workers(
        client, context, providers=providers, task_queue=queue, templates=templates, kinds=lanes
    )


def needs_sweep(specs: Iterable[JourneySpec]) -> bool:
    """Whether any journey has an inactivity or date trigger (`engine/system/sweep.py`)."""
    return any(isinstance(spec.starts, Inactive | OnDate) for spec in specs)


async def ensure_sweep(client: Client, *, task_queue: str) -> str:
    """Start the due-trigger sweep for `task_queue` unless it runs (idempotent: one
    workflow id per task queue, a running sweep is left alone); returns its workflow id."""
    workflow_id = sweep_workflow_id(task_queue)
    await client.start_workflow(
        DueTriggerSweep.run,
        SweepState(),
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    return workflow_id


def lane_workers(
    client: Client,
    context: Context,
    *,
    providers: Providers,
    task_queue: str | None = None,
    templates: TemplateStore | None = None,
    max_concurrent_activities: int = 100,
    kinds: Iterable[bool] = (False, True),
) -> list[Worker]:
    """Unless `[sms] lanes = false`, a worker per SMS provider lane (of `kinds`: marketing
    False, transactional True): only the delivery activity, at the lane's fleet-wide rate. Temporal
    applies `max_task_queue_activities_per_second` on the server, across every worker
    polling the queue, so N workers still send at most `tps` through the provider."""
    config = context.config
    if not config.sms.lanes:
        return []
    queue = task_queue or context.settings.task_queue
    deliverer = Deliverer(
        sessions=context.sessions,
        config=config,
        providers=providers,
        templates=templates or template_store(),
    )
    delivery = DeliveryActivities(deliverer)
    workers = []
    for settings in config.sms_providers():
        for transactional in kinds:
            workers.append(
                Worker(
                    client,
                    task_queue=lane_queue(queue, settings.name, transactional=transactional),
                    activities=[delivery.deliver],
                    max_task_queue_activities_per_second=lane_rate(
                        config, settings.name, transactional=transactional
                    ),
                    max_concurrent_activities=max_concurrent_activities,
                )
            )
    return workers


@contextlib.asynccontextmanager
async def running(workers: Sequence[Worker]) -> AsyncIterator[None]:
    """Run several workers for the length of a block (e.g. the SMS lanes)."""
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield


async def register_schedules(client: Client, context: Context, segments: Segments) -> None:
    """Create or update every recurring journey's Temporal Schedule (idempotent: each
    worker start may call it). Raises `ConfigError` for an audience no segment names."""
    specs = [cls.__journey__ for cls in shipped_journeys().values()]
    try:
        items = schedules.recurring(specs, context.config)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for item in items:
        if item.audience not in segments:
            raise ConfigError(
                f"{item.journey}: its schedule's audience {item.audience!r} is no segment "
                f"(known: {', '.join(segments.names()) or 'none'})"
            )
    await schedules.register(
        client, items, task_queue=context.settings.task_queue, default_zone=context.config.timezone
    )


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    stop_on_signals: bool = False,
    roles: Collection[Role] = ROLES,
) -> None:
    """`nudge worker`: journeys and activities (of `roles`), until `stop` is set (or
    SIGTERM/SIGINT with `stop_on_signals`); in-flight activities get to finish before it
    returns."""
    stop = stop or asyncio.Event()
    if stop_on_signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    async with Context.opened(settings) as context:
        require_encryption(settings)
        check_overrides(context.config, settings)
        providers = build_providers(context)
        if settings.worker_metrics_bind:
            host, _, port = settings.worker_metrics_bind.rpartition(":")
            prometheus_client.start_http_server(int(port), host or "0.0.0.0", registry=REGISTRY)
        try:
            client = await connect(
                settings,
                runtime=sdk_runtime(settings),
                user_keys=StoreUserKeys(context.sessions),
            )
            await providers.start()
            segments = known_segments(context.config)
            await register_schedules(client, context, segments)
            workers = build_workers(
                client, context, providers=providers, segments=segments, roles=roles
            )
            async with running(workers):
                if needs_sweep(cls.__journey__ for cls in shipped_journeys().values()):
                    await ensure_sweep(client, task_queue=settings.task_queue)
                settle()
                await stop.wait()
        finally:
            await providers.close()
