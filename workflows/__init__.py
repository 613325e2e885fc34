"""The journeys: one module each, templates beside them in `templates/<journey>/`.

Importing this package registers every journey (`engine.journey.JOURNEYS`).
"""

from workflows.abandoned_cart import AbandonedCart
from workflows.onboarding import Onboarding
from workflows.win_back import WinBack

ALL = [AbandonedCart, Onboarding, WinBack]

__all__ = ["ALL", "AbandonedCart", "Onboarding", "WinBack"]
