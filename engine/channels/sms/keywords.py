"""Inbound SMS keywords (STOP / START / HELP), pure and case-insensitive.

Matching is on whole words (`\\w+` tokens, Unicode case-folded), never on substrings, so
"stopwatch" is not an opt-out. An opt-out keyword counts anywhere in the text ("please
STOP texting me"): missing an opt-out costs far more than a false one (TCPA/CTIA ask that
any reasonable opt-out be honoured). START and HELP count only as the first word, so a
"yes" inside a conversation never re-subscribes anyone. When several match, stop wins.
Keywords of several words ("opt out") match as a run of consecutive words.
"""

from __future__ import annotations

import re
from typing import Literal

Keyword = Literal["stop", "start", "help"]
KINDS: tuple[Keyword, ...] = ("stop", "start", "help")

DEFAULT_KEYWORDS: dict[Keyword, tuple[str, ...]] = {
    # REVOKE and OPT OUT are in the FCC's 2024 list of opt-out words, beside the CTIA ones.
    "stop": ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT"),
    "start": ("START", "UNSTOP", "YES"),
    "help": ("HELP", "INFO"),
}

_KIND_BY_NAME: dict[str, Keyword] = {k: k for k in KINDS}
_WORD = re.compile(r"\w+")


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.casefold()))


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return n > 0 and any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def keyword_table(
    extra: dict[str, dict[str, list[str]]] | None,
) -> dict[Keyword, set[tuple[str, ...]]]:
    """The defaults merged with `extra` ({language: {kind: [keywords]}}, from
    `SmsChannel.keywords`); every language is merged in, since an inbound text does not say
    its language. Raises ValueError for a kind other than stop/start/help."""
    table: dict[Keyword, set[tuple[str, ...]]] = {
        kind: {_words(k) for k in words} for kind, words in DEFAULT_KEYWORDS.items()
    }
    for language, kinds in (extra or {}).items():
        for name, words in kinds.items():
            kind = _KIND_BY_NAME.get(name.casefold())
            if kind is None:
                raise ValueError(
                    f"keywords.{language}: unknown kind {name!r} (expected stop, start or help)"
                )
            table[kind].update(w for w in map(_words, words) if w)
    return table


def classify(text: str, extra: dict[str, dict[str, list[str]]] | None = None) -> Keyword | None:
    """Which keyword an inbound text is, or None for an ordinary reply."""
    words = _words(text)
    if not words:
        return None
    table = keyword_table(extra)
    if any(_contains(words, phrase) for phrase in table["stop"]):
        return "stop"
    for kind in ("start", "help"):
        if any(words[: len(phrase)] == phrase for phrase in table[kind]):
            return kind
    return None
