"""Inbound keyword classification (pure)."""

from __future__ import annotations

import pytest

from engine.channels.sms.keywords import classify, keyword_table


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("stop", "stop"),
        ("STOP", "stop"),
        ("Stop please", "stop"),
        ("  stop. ", "stop"),
        ("please STOP texting me", "stop"),
        ("StopAll", "stop"),
        ("unsubscribe", "stop"),
        ("cancel", "stop"),
        ("End", "stop"),
        ("quit!", "stop"),
        ("opt out", "stop"),
        ("start", "start"),
        ("UNSTOP", "start"),
        ("Yes", "start"),
        ("yes please", "start"),
        ("help", "help"),
        ("Info?", "help"),
        ("HELP me", "help"),
        ("stopwatch", None),
        ("restart", None),
        ("helpful", None),
        ("yesterday", None),
        ("I said yes", None),
        ("can you help", None),
        ("", None),
        ("😀", None),
        ("yes but stop", "stop"),
        ("help stop", "stop"),
    ],
)
def test_defaults(text: str, kind: str | None) -> None:
    assert classify(text, None) == kind


def test_extra_keywords_per_language_are_merged() -> None:
    extra = {
        "fr": {"stop": ["ARRÊT", "désabonner"], "start": ["OUI"], "help": ["AIDE"]},
        "es": {"stop": ["BAJA"]},
    }
    assert classify("arrêt", extra) == "stop"
    assert classify("Désabonner svp", extra) == "stop"
    assert classify("baja", extra) == "stop"
    assert classify("oui", extra) == "start"
    assert classify("aide", extra) == "help"
    assert classify("arrêt", None) is None
    assert classify("stop", extra) == "stop"  # defaults stay


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind 'pause'"):
        keyword_table({"en": {"pause": ["PAUSE"]}})
