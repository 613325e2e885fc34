"""The Temporal worker: every journey, the activities, and the channel providers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.deliver import DeliveryActivities
from activities.runs import RunActivities
from engine.channels.registry import Providers
from engine.context import Context
from engine.delivery import Deliverer
from engine.journey import Journey
from engine.templates import TemplateStore

# Deterministic modules shared by all runs instead of re-imported per run (the sandbox's
# main CPU and memory cost); journeys in `workflows/` stay sandboxed.
PASSTHROUGH = ("engine", "schemas", "activities", "liquid", "yaml")


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every journey runs in, on workers and in replays alike."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def journey_classes() -> dict[str, type[Journey]]:
    """Every shipped journey: the ones `workflows/__init__.py` lists in `ALL`."""
    import workflows

    return {cls.__journey__.name: cls for cls in workflows.ALL}


def build_worker(
    client: Client,
    context: Context,
    *,
    providers: Providers,
    task_queue: str | None = None,
    journeys: Mapping[str, type[Journey]] | None = None,
    templates: TemplateStore | None = None,
    max_cached_workflows: int = 1000,
) -> Worker:
    """A worker for `task_queue` (default: the settings') running `journeys` (default: all)."""
    deliverer = Deliverer(
        sessions=context.sessions,
        config=context.config,
        providers=providers,
        templates=templates,
    )
    delivery = DeliveryActivities(deliverer)
    bookkeeping = RunActivities(
        sessions=context.sessions, config=context.config, version=context.settings.build_id
    )
    classes: Sequence[type[Journey]] = list((journeys or journey_classes()).values())
    return Worker(
        client,
        task_queue=task_queue or context.settings.task_queue,
        workflows=list(classes),
        activities=[
            delivery.deliver,
            bookkeeping.run_started,
            bookkeeping.run_finished,
            bookkeeping.goal_reached,
            bookkeeping.user_zone,
        ],
        workflow_runner=workflow_runner(),
        max_cached_workflows=max_cached_workflows,
        max_concurrent_workflow_task_polls=10,
        nonsticky_to_sticky_poll_ratio=0.5,
    )
