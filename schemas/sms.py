"""What an SMS provider reports back: delivery receipts and inbound (mobile-originated)
messages. SMPP and HTTP providers map their own wire shapes onto these.

Both hold personal data (numbers, text): never log them, log `smsc_id` only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ReceiptState = Literal[
    "enroute",
    "delivered",
    "expired",
    "deleted",
    "undeliverable",
    "accepted",
    "unknown",
    "rejected",
]


class Receipt(BaseModel):
    """A delivery receipt for one submitted part, keyed by the SMSC's message id."""

    model_config = ConfigDict(frozen=True)

    smsc_id: str
    stat: str = Field(description="the SMSC's word: DELIVRD, UNDELIV, EXPIRED, REJECTD, ...")
    state: ReceiptState
    final: bool = Field(description="False for ENROUTE/ACCEPTD: more receipts may follow")
    error_code: str | None = Field(default=None, description="`err:` of the receipt text")
    received_at: datetime


class InboundSms(BaseModel):
    """A mobile-originated SMS (a reply, a keyword). Concatenated MOs arrive as several
    parts, each with `concat` = (reference, total, seq), and are joined into one."""

    model_config = ConfigDict(frozen=True)

    sender: str = Field(description="E.164 (`+...`) when the SMSC marked it international")
    destination: str
    text: str
    data_coding: int
    concat: tuple[int, int, int] | None = None
    received_at: datetime
    missing: int = Field(
        default=0, description="parts that never arrived (a long message joined at timeout)"
    )
