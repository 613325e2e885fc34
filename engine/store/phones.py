"""Phone numbers: anything a person typed, to E.164 (`+14155550123`), with `phonenumbers`."""

from __future__ import annotations

import phonenumbers

_E = phonenumbers.NumberParseException
_PARSE_REASONS = {
    _E.NOT_A_NUMBER: "not a number",
    _E.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    _E.TOO_SHORT_NSN: "too short",
    _E.TOO_LONG: "too long",
}


def normalise_phone(raw: str, default_region: str | None = None) -> str:
    """Return `raw` in E.164 form, or raise ValueError saying why it is not a usable number.

    `default_region` (ISO 3166 alpha-2, e.g. "US") is used when `raw` has no `+` country
    code. The message never repeats the number itself, so it is safe to log.
    """
    region = default_region.upper() if default_region else None
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise ValueError(
                "phone number has no valid country code; write it as +<country><number> "
                "or give a default region"
            ) from exc
        reason = _PARSE_REASONS.get(exc.error_type, "unreadable")
        raise ValueError(f"not a phone number ({reason})") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("phone number has the wrong length for its country")
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("phone number is not valid for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
