"""JSON log lines, extras, Temporal context flattening, and redaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.observability.logging import REDACTED, configure_logging, redact

PHONE = "+15555550123"
APNS_TOKEN = "a3f1" * 16  # 64 hex chars, the shape of an APNs device token
FCM_TOKEN = "dXk3Jq9mRkS0abcDEF12:APA91bH" + "x7Y2z" * 25
B64_KEY = "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng="
RUN_ID = "01a2213d-0b52-7d55-930f-c2a5646d4cff"
WORKFLOW_ID = "journey/abandoned_cart/u_1a2b3c4d5e6f7a8b9c0d"


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines()]

    configure_logging(json=True, level="DEBUG")
    yield read
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_line_has_fields_and_extras(lines: Any) -> None:
    logging.getLogger("nudge.test").info(
        "sent %s", "cart_reminder", extra={"workflow_id": WORKFLOW_ID, "message_id": "m_1"}
    )
    [entry] = lines()
    assert entry["level"] == "INFO"
    assert entry["logger"] == "nudge.test"
    assert entry["msg"] == "sent cart_reminder"
    assert entry["workflow_id"] == WORKFLOW_ID
    assert entry["message_id"] == "m_1"
    assert entry["ts"].endswith("+00:00")


def test_temporal_context_is_flattened(lines: Any) -> None:
    logging.getLogger("temporalio.workflow").info(
        "step",
        extra={
            "temporal_workflow": {
                "workflow_id": WORKFLOW_ID,
                "run_id": RUN_ID,
                "workflow_type": "abandoned_cart",
                "namespace": "default",
            }
        },
    )
    [entry] = lines()
    assert entry["workflow_id"] == WORKFLOW_ID
    assert entry["run_id"] == RUN_ID
    assert entry["journey"] == "abandoned_cart"
    assert "temporal_workflow" not in entry


def test_phone_numbers_and_tokens_are_redacted_everywhere(lines: Any) -> None:
    log = logging.getLogger("nudge.test")
    log.warning("texting %s with token %s", PHONE, APNS_TOKEN, extra={"device": FCM_TOKEN})
    try:
        raise ValueError(f"bad key {B64_KEY} for {PHONE}")
    except ValueError:
        log.exception("failed")
    text = json.dumps(lines())
    for secret in (PHONE, APNS_TOKEN, B64_KEY, "APA91bH" + "x7Y2z" * 25):
        assert secret not in text
    assert REDACTED in text


def test_ids_we_log_are_kept() -> None:
    line = f"run {RUN_ID} of {WORKFLOW_ID} message m_0123456789abcdef01234567 step cart_reminder_v2"
    assert redact(line) == line
    # Long snake_case names and module paths are words, not tokens.
    assert redact("engine.channels.push.apns.ApnsProvider.send_notification_now") == (
        "engine.channels.push.apns.ApnsProvider.send_notification_now"
    )
    assert redact("template_abandoned_cart_last_call_fr") == "template_abandoned_cart_last_call_fr"


def test_text_mode_redacts_and_shows_extras(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(json=False)
        logging.getLogger("nudge.test").info("to %s", PHONE, extra={"journey": "win_back"})
        err = capsys.readouterr().err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert PHONE not in err
    assert "journey=win_back" in err


def test_configure_is_idempotent() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(json=True)
        configure_logging(json=True)
        assert [h.get_name() for h in root.handlers].count("nudge") == 1
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@given(
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True), st.sampled_from(["", " ", "tel:", "("])
)
def test_any_e164_number_is_redacted(number: str, prefix: str) -> None:
    assert number not in redact(f"call {prefix}{number} now")


@given(st.binary(min_size=24, max_size=64))
def test_random_hex_tokens_are_redacted(raw: bytes) -> None:
    token = raw.hex()
    assert token not in redact(f"token={token}")
