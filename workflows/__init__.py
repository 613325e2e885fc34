"""The journeys: one module each, templates beside them in `templates/<journey>/`.

`ALL` is the list the worker runs and the router routes to (`engine.app.journeys`).
"""

from typing import Any

from engine import Journey
from workflows.abandoned_cart import AbandonedCart
from workflows.delivery_survey import DeliverySurvey
from workflows.onboarding import Onboarding
from workflows.sms_double_opt_in import SmsDoubleOptIn
from workflows.win_back import WinBack

ALL: list[type[Journey[Any]]] = [AbandonedCart, Onboarding, WinBack, SmsDoubleOptIn, DeliverySurvey]

__all__ = ["ALL", "AbandonedCart", "DeliverySurvey", "Onboarding", "SmsDoubleOptIn", "WinBack"]
