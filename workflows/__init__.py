"""The journeys: one module each, templates beside them in `templates/<journey>/`.

`ALL` is the list the worker runs and the router routes to (`engine.app.journeys`).

This package imports nothing when it is imported: Temporal's sandbox re-imports a
journey's module, and so this package, for every run it starts, and a run should pay for
its own journey only. `ALL` and the classes are imported on first use (PEP 562); add a new
journey to `MODULES`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine import Journey
    from workflows.abandoned_cart import AbandonedCart
    from workflows.appointment_reminder import AppointmentReminder
    from workflows.delivery_survey import DeliverySurvey
    from workflows.onboarding import Onboarding
    from workflows.sms_double_opt_in import SmsDoubleOptIn
    from workflows.win_back import WinBack

    ALL: list[type[Journey[Any]]]

MODULES = {
    "AbandonedCart": "workflows.abandoned_cart",
    "Onboarding": "workflows.onboarding",
    "WinBack": "workflows.win_back",
    "SmsDoubleOptIn": "workflows.sms_double_opt_in",
    "AppointmentReminder": "workflows.appointment_reminder",
    "DeliverySurvey": "workflows.delivery_survey",
}
"""Each shipped journey's class and the module that defines it, in `ALL`'s order."""


def __getattr__(name: str) -> Any:
    if name == "ALL":
        return [__getattr__(cls) for cls in MODULES]
    if name in MODULES:
        return getattr(importlib.import_module(MODULES[name]), name)
    raise AttributeError(f"module 'workflows' has no attribute {name!r}")


__all__ = [
    "ALL",
    "AbandonedCart",
    "AppointmentReminder",
    "DeliverySurvey",
    "Onboarding",
    "SmsDoubleOptIn",
    "WinBack",
]
