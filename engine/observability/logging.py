"""Process logging: one JSON object per line (or plain text), with redaction.

`configure_logging` installs a single handler on the root logger writing to stderr (stdout
stays free for command output such as `nudge history export > file.json`). Structured
fields are passed with `extra=`: `log.info("sent", extra={"message_id": mid, "journey": j})`.
Records from Temporal's `workflow.logger` / `activity.logger` carry their context in a
`temporal_workflow` / `temporal_activity` dict; it is flattened to `workflow_id`, `run_id`,
`journey` (the workflow type), `activity` and `attempt`.

Redaction is defence in depth: Nudge code must never log phone numbers, device tokens or
keys, but anything shaped like an E.164 number or a long random token is replaced by
`[redacted]` in the message, string extras and exception text anyway.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

REDACTED = "[redacted]"

# E.164: "+", a non-zero country code digit, 7..15 digits in all.
_E164 = re.compile(r"(?<![\w+])\+[1-9]\d{6,14}(?!\d)")
# Base64url / hex / Nudge write keys: 32+ chars. Hex runs are always redacted; others only
# when they contain at least two digits (random tokens do; identifiers such as
# `abandoned_cart_reminder` do not) and are not UUIDs (run ids are useful in logs).
_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")
# Standard base64 (keys, credentials): 40+ chars of mixed case and digits, maybe with + / =.
_B64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40,}={0,2}")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_TEMPORAL_FIELDS = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_run_id": "run_id",
    "workflow_type": "journey",
    "activity_type": "activity",
    "attempt": "attempt",
}


def _token(match: re.Match[str]) -> str:
    text = match.group(0)
    if _HEX.match(text):
        return REDACTED
    if sum(c.isdigit() for c in text) < 2 or _UUID.match(text):
        return text
    return REDACTED


def _b64(match: re.Match[str]) -> str:
    text = match.group(0)
    mixed = (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and any(c.isdigit() for c in text)
    )
    return REDACTED if mixed else text


def redact(text: str) -> str:
    """`text` with E.164 numbers and long random tokens replaced by `[redacted]`."""
    text = _E164.sub(REDACTED, text)
    text = _B64.sub(_b64, text)
    return _TOKEN.sub(_token, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record in place: message (args merged in), string extras, exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, _redact_value(value))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD:
            continue
        if key in ("temporal_workflow", "temporal_activity") and isinstance(value, dict):
            for src, dst in _TEMPORAL_FIELDS.items():
                if src in value and dst not in fields:
                    fields[dst] = value[src]
            continue
        fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...extras, "exc"?}` on one line; ts is UTC ISO 8601."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return jsonlib.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger: msg key=value ...` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        if not extras:
            return line
        head, sep, tail = line.partition("\n")  # keep extras on the message line
        return f"{head} {extras}{sep}{tail}"


_HANDLER_NAME = "nudge"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time (test capture, a redirected CLI)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # handle() holds the handler lock here
        super().emit(record)


def configure_logging(*, json: bool, level: str = "INFO") -> None:
    """Send all logging to stderr, as JSON lines (`json=True`) or text, with redaction.

    Idempotent: calling it again replaces the handler it installed. Other libraries'
    loggers (uvicorn with `log_config=None`, temporalio, sqlalchemy) propagate to it.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic narrates every schema check at INFO; only its warnings are news in a service.
    logging.getLogger("alembic").setLevel(logging.WARNING)
