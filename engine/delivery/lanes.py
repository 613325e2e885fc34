"""SMS lanes: each provider's sends on task queues of its own, so Temporal enforces the
provider's TPS across every worker (`max_task_queue_activities_per_second`), and
transactional sends (OTPs) on a lane apart, never queued behind a marketing burst.

A send asks `nudge.sms_lanes` for the user's lanes (the providers serving the number, in
route order); it then calls the delivery activity on the first lane's queue, and on the
next one when that provider was down, open-circuited, throttling or refused the message
(`DeliverOutcome.skipped`: nothing was sent). Lanes are on unless `[sms] lanes = false`;
the workers serve every lane (`engine.app.worker.lane_workers`).
"""

from __future__ import annotations

from engine.channels.sms.route import route_order
from engine.config.nudge_toml import NudgeConfig
from schemas.journeys import SmsLanes


def lane_queue(task_queue: str, provider: str, *, transactional: bool) -> str:
    """The task queue of one provider's lane: `<queue>.sms.<provider>[.tx]`."""
    return f"{task_queue}.sms.{provider}" + (".tx" if transactional else "")


def lane_rate(config: NudgeConfig, provider: str, *, transactional: bool) -> float:
    """The lane's fleet-wide limit in sends per second."""
    settings = next(p for p in config.sms_providers() if p.name == provider)
    if transactional and settings.transactional_tps is not None:
        return settings.transactional_tps
    return settings.tps


def lanes_for(
    config: NudgeConfig, phone: str | None, *, task_queue: str, transactional: bool
) -> SmsLanes:
    """The lanes a send to `phone` tries, in order (none when lanes are off)."""
    if not config.sms.lanes or not phone:
        return SmsLanes()
    providers = config.sms_providers()
    names = [providers[i].name for i in route_order(providers, phone)]
    return SmsLanes(
        providers=names,
        queues=[lane_queue(task_queue, n, transactional=transactional) for n in names],
    )
