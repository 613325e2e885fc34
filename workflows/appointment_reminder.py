"""Appointment reminder: a push at 09:00 the day before, in the user's zone, and an SMS on
the morning of the appointment.

The trigger is a date: each `Appointment Booked` event (properties `appointment_id`,
`starts_at` as an ISO date-time with its offset) plans a run for 09:00 local the day
before `starts_at` (DST-correct). Booking the same `appointment_id` again moves the plan;
`Appointment Cancelled` for it cancels the plan, or ends a run already under way.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from temporalio import workflow

from engine import (
    ALWAYS,
    Channel,
    Duration,
    Journey,
    JourneyEntry,
    JourneyResult,
    JourneySettings,
    OnDate,
    journey,
)


class AppointmentReminderSettings(JourneySettings):
    day_of_at: time = time(8, 0)
    """Local time of the SMS on the appointment's day."""
    day_of_lead: Duration = timedelta(hours=1)
    """No same-day SMS when the appointment starts sooner than this after `day_of_at`."""


@journey(
    trigger=OnDate(
        "starts_at", event="Appointment Booked", offset=-timedelta(days=1), at=time(9, 0)
    ),
    key="appointment_id",
    exit_on=("Appointment Cancelled",),
    reentry=ALWAYS,
    transactional=True,
)
class AppointmentReminder(Journey[AppointmentReminderSettings]):
    @workflow.run
    async def run(self, entry: JourneyEntry) -> JourneyResult:
        await self.send("day_before", channel=Channel.PUSH, transactional=True)
        starts_at = datetime.fromisoformat(str(entry.event.properties["starts_at"]))
        # The appointment's own local date, at `day_of_at` on the user's clock.
        await self.sleep_until_local(starts_at, self.settings.day_of_at)
        if workflow.now() + self.settings.day_of_lead > starts_at:
            return self.finish("reminded_day_before")
        await self.send("day_of", channel=Channel.SMS, transactional=True)
        return self.finish("reminded")
