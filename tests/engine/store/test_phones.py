"""Phone number normalisation to E.164."""

from __future__ import annotations

import pytest

from engine.store.phones import normalise_phone


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+1 415-555-0123", None, "+14155550123"),
        ("(415) 555-0123", "US", "+14155550123"),
        ("020 7946 0018", "gb", "+442079460018"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),
    ],
)
def test_valid(raw: str, region: str | None, e164: str) -> None:
    assert normalise_phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("415-555-0123", None, "no valid country code"),
        ("hello", "US", "not a phone number"),
        ("+1 415", None, "wrong length"),
        ("+1 099 555 0123", None, "not valid"),
    ],
)
def test_invalid(raw: str, region: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        normalise_phone(raw, region)
    assert raw not in str(info.value)
