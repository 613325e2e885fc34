"""The journeys: one module each, templates beside them in `templates/<journey>/`.

Importing this package registers every journey (`engine.journey.JOURNEYS`).
"""

from workflows.abandoned_cart import AbandonedCart
from workflows.onboarding import Onboarding
from workflows.sms_double_opt_in import SmsDoubleOptIn
from workflows.win_back import WinBack

ALL = [AbandonedCart, Onboarding, WinBack, SmsDoubleOptIn]

__all__ = ["ALL", "AbandonedCart", "Onboarding", "SmsDoubleOptIn", "WinBack"]
