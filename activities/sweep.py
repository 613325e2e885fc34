"""The due-trigger sweep's activity: due rows become events, in one transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from engine import ids
from engine.config.nudge_toml import NudgeConfig
from engine.journey import JourneySpec
from engine.journey.triggers import JOURNEY_PROPERTY, Inactive, OnDate
from engine.localtime import date_due, parse_date
from engine.store import due, outbox
from engine.store.models import DueTrigger, User
from schemas.triggers import ProfileCursor, SweepRequest, SweepResult


class SweepActivities:
    """Fires what is due for the journeys this worker runs."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        config: NudgeConfig,
        specs: Iterable[JourneySpec],
    ) -> None:
        self._sessions = sessions
        self._config = config
        # Only journeys this worker runs and that the sweep serves: a worker of an older
        # or newer deployment leaves the rows of journeys it does not know to the others.
        self._specs = {
            spec.name: spec for spec in specs if isinstance(spec.starts, Inactive | OnDate)
        }
        self._profile_dates = [
            (spec, spec.starts)
            for spec in self._specs.values()
            if isinstance(spec.starts, OnDate) and spec.starts.event is None
        ]

    @activity.defn(name="nudge.sweep")
    async def sweep(self, request: SweepRequest) -> SweepResult:
        """Write a `User Inactive` / `Date Reached` event for every row due at `request.at`
        (up to `[triggers] sweep_batch`), marked fired in the same transaction; an event's
        message id comes from the row and its due instant, so a retried round adds nothing."""
        at = request.at
        limit = self._config.triggers.sweep_batch
        async with self._sessions() as session, session.begin():
            cursor, read = await self._plan_profiles(session, request)
            known = list(self._specs)
            rows = await due.take_due(session, at=at, limit=limit, journeys=known)
            for row in rows:
                spec = self._specs[row.journey]
                assert isinstance(spec.starts, Inactive | OnDate) and spec.trigger is not None
                properties = {**(row.detail or {}), JOURNEY_PROPERTY: row.journey}
                again = None
                if isinstance(spec.starts, Inactive):
                    properties["event"] = spec.starts.event
                    properties["inactive_since"] = (row.last_at or row.due_at).isoformat()
                else:
                    properties["due_at"] = row.due_at.isoformat()
                    again = await self._again(session, spec.starts, row)
                await outbox.add_event(
                    session,
                    user_id=row.user_id,
                    name=spec.trigger,
                    message_id=ids.due_message_id(row.journey, row.user_id, row.key, row.due_at),
                    properties=properties,
                    source="sweep",
                    timestamp=row.due_at,
                    received_at=at,
                )
                due.fired(row, at=at, again_at=again)
            await session.flush()
            next_at = await due.next_due(session, journeys=known)
        return SweepResult(
            fired=len(rows),
            more=len(rows) >= limit or read >= limit,
            next_due=next_at,
            every=self._config.triggers.sweep_every,
            profiles=cursor,
        )

    async def _plan_profiles(
        self, session: AsyncSession, request: SweepRequest
    ) -> tuple[ProfileCursor | None, int]:
        """Plan date triggers on profile attributes (`OnDate("birthday")`) for the profiles
        changed since the cursor; returns the new cursor and how many profiles were read.

        Only changes older than `[triggers] profile_settle` are read, so a profile written
        by a transaction that commits late is not passed over by the keyset cursor.
        """
        if not self._profile_dates:
            return request.profiles, 0
        since = request.profiles
        users = await due.changed_profiles(
            session,
            since=None if since is None else (since.updated_at, since.user_id),
            until=request.at - self._config.triggers.profile_settle,
            limit=self._config.triggers.sweep_batch,
        )
        for spec, trigger in self._profile_dates:
            planned, gone = [], []
            for user in users:
                value = parse_date(trigger.value_in(user.attributes or {}))
                when = None
                if value is not None:
                    when = date_due(
                        value,
                        at=trigger.at,
                        offset=trigger.offset,
                        anniversary=trigger.anniversary,
                        zone=user.timezone or self._config.timezone,
                        after=request.at,
                    )
                if when is None:
                    gone.append(user.id)
                else:
                    detail = {"attribute": trigger.attribute}
                    planned.append(
                        {
                            "journey": spec.name,
                            "user_id": user.id,
                            "key": "",
                            "due_at": when,
                            "detail": detail,
                        }
                    )
            await due.cancel_many(session, journey=spec.name, user_ids=gone)
            await due.plan(session, rows=planned, at=request.at)
        if not users:
            return since, 0
        last = users[-1]
        return ProfileCursor(updated_at=last.updated_at, user_id=last.id), len(users)

    async def _again(
        self, session: AsyncSession, trigger: OnDate, row: DueTrigger
    ) -> datetime | None:
        """An anniversary's next instant after this one (None: the trigger does not recur)."""
        if not trigger.anniversary:
            return None
        user = await session.get(User, row.user_id)
        source = (
            (row.detail or {}) if trigger.event is not None else (user.attributes if user else {})
        )
        value = parse_date(trigger.value_in(source or {}))
        if value is None:
            return None
        zone = (user.timezone if user else None) or self._config.timezone
        return date_due(
            value,
            at=trigger.at,
            offset=trigger.offset,
            anniversary=True,
            zone=zone,
            after=row.due_at,
        )
