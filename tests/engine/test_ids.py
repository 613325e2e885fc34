"""engine.ids: every id Nudge makes, as pure functions. Stable where a retry must find its
row again; fresh where two things must never collide; never personal data."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import ids

names = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=30)


def test_fresh_ids_have_their_shape_and_do_not_repeat() -> None:
    for make, pattern in (
        (ids.new_user_id, r"u_[0-9a-f]{20}"),
        (ids.new_device_id, r"d_[0-9a-f]{20}"),
        (ids.new_message_id, r"evt_[0-9a-f]{24}"),
        (ids.new_write_key, r"nk_[A-Za-z0-9_-]{32}"),
    ):
        made = {make() for _ in range(200)}
        assert len(made) == 200
        assert all(re.fullmatch(pattern, value) for value in made), made


def test_workflow_ids_are_journey_user_and_key() -> None:
    assert ids.journey_workflow_id("abandoned_cart", "u_1") == "journey/abandoned_cart/u_1"
    assert ids.journey_workflow_id("t_keyed", "u_1", "c9") == "journey/t_keyed/u_1/c9"
    assert ids.journey_workflow_id("t_keyed", "u_1", None) == "journey/t_keyed/u_1"
    with pytest.raises(ValueError, match="'/'"):
        ids.journey_workflow_id("a/b", "u_1")


@given(workflow_id=names, run_id=names, step=names, device=names)
def test_send_keys_and_message_ids_are_stable_and_apart(
    workflow_id: str, run_id: str, step: str, device: str
) -> None:
    key = ids.send_idempotency_key(workflow_id, run_id, step)
    assert key == ids.send_idempotency_key(workflow_id, run_id, step)  # a retry finds it
    assert ids.device_idempotency_key(key, device) == f"{key}/{device}"
    message = ids.message_id(key)
    assert message == ids.message_id(key)
    assert re.fullmatch(r"m_[0-9a-f]{24}", message)
    assert ids.message_id(ids.device_idempotency_key(key, device)) != message


def test_two_entries_of_one_workflow_id_get_different_send_keys() -> None:
    first = ids.send_idempotency_key("journey/j/u_1", "run-a", "welcome")
    again = ids.send_idempotency_key("journey/j/u_1", "run-b", "welcome")
    assert first != again and ids.message_id(first) != ids.message_id(again)


def test_write_keys_are_stored_hashed() -> None:
    key = ids.new_write_key()
    hashed = ids.hash_write_key(key)
    assert hashed == ids.hash_write_key(key) and re.fullmatch(r"[0-9a-f]{64}", hashed)
    assert key not in hashed


def test_hashes_never_carry_the_number_or_the_external_id() -> None:
    phone, external = "+14155550123", "ann@example.com"
    sender = ids.inbound_sender_key(phone)
    assert sender == ids.inbound_sender_key(phone) and sender.startswith("sms:")
    assert "4155550123" not in sender
    erased = ids.erasure_hash("u_1", external, "salt")
    assert erased == ids.erasure_hash("u_1", external, "salt")
    assert erased != ids.erasure_hash("u_1", external, "other salt")
    assert external not in erased
