"""The journeys: one module each, templates beside them in `templates/<journey>/`.

`ALL` is the list the worker runs and the router routes to (`engine.app.journeys`).
"""

from typing import Any

from engine import Journey
from workflows.abandoned_cart import AbandonedCart
from workflows.appointment_reminder import AppointmentReminder
from workflows.onboarding import Onboarding
from workflows.sms_double_opt_in import SmsDoubleOptIn
from workflows.win_back import WinBack

ALL: list[type[Journey[Any]]] = [
    AbandonedCart,
    Onboarding,
    WinBack,
    SmsDoubleOptIn,
    AppointmentReminder,
]

__all__ = ["ALL", "AbandonedCart", "AppointmentReminder", "Onboarding", "SmsDoubleOptIn", "WinBack"]
