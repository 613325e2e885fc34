"""The segment language: a small boolean expression over a user's profile attributes,
consent and event history, parsed with `lark` (an Earley/LALR parser from PyPI, so errors
come with a line, a column and what was expected) into the typed tree below.

    plan == "pro" and not did("App Opened", within="14d")
    count("Order Completed", where={"currency": "EUR"}, within="30d") >= 2
    subscribed("sms") or consent("push", topic="news") == "subscribed"
    country in ["FR", "BE"] and age >= 18 and vip
    near(52.52, 13.405, km=5, within="7d") and not did("Order Completed")

Names are profile attributes (`address.city` reads a nested one; `timezone` and `locale`
are the profile's own fields). A bare name is true when the attribute is `true`. `did` and
`count` look at the user's events (`within` a duration such as "14d", `where` equal
properties); `subscribed(channel, topic="marketing")` is the consent a marketing send
needs; `consent(channel, topic=...)` compares the state ("subscribed", "unsubscribed",
"pending", "unknown"). `near(latitude, longitude, km=R)` is true when the user's last known
location (the one `user_locations` keeps) lies within R km of the point, great-circle;
`within=` keeps only a location taken that recently. Nothing here touches a database:
`engine.segments.compile` turns a tree into SQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from engine.durations import parse_duration

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> negate
         | comparison
?comparison: operand COMPARATOR value -> compare
           | operand _IN sequence -> member
           | operand _NOT _IN sequence -> not_member
           | operand
?operand: call | name | "(" or_expr ")"
call: CNAME "(" [argument ("," argument)*] ")"
argument: value -> positional
        | CNAME "=" value -> keyword
name: CNAME ("." CNAME)*
?value: STRING -> string
      | SIGNED_NUMBER -> number
      | _TRUE -> true
      | _FALSE -> false
      | _NULL -> null
      | sequence
      | mapping
sequence: "[" [value ("," value)*] "]"
mapping: "{" [pair ("," pair)*] "}"
pair: STRING ":" value

_OR.2: /or\b/
_AND.2: /and\b/
_NOT.2: /not\b/
_IN.2: /in\b/
_TRUE.2: /true\b/
_FALSE.2: /false\b/
_NULL.2: /null\b/
COMPARATOR: "==" | "!=" | ">=" | "<=" | ">" | "<"
STRING: /"(\\.|[^"\\])*"/ | /'(\\.|[^'\\])*'/
%import common.CNAME
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""

CHANNELS = ("sms", "push", "webpush")
CONSENT_STATES = ("subscribed", "unsubscribed", "pending", "unknown")
PROFILE_FIELDS = ("timezone", "locale")
"""Names that read the profile's own columns rather than its attributes."""


class SegmentError(ValueError):
    """An expression that cannot be used: `str()` is `source:line:column: reason`."""

    def __init__(self, reason: str, *, source: str = "<segment>", line: int = 1, column: int = 1):
        super().__init__(f"{source}:{line}:{column}: {reason}")
        self.reason, self.source, self.line, self.column = reason, source, line, column


# -- the tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attr:
    """A profile attribute (`path` into `users.attributes`) or a profile field."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class EventFilter:
    """Events named `event`, newer than `within` (None: ever), whose properties equal `where`."""

    event: str
    within: timedelta | None = None
    where: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Did:
    events: EventFilter


@dataclass(frozen=True)
class Count:
    events: EventFilter


@dataclass(frozen=True)
class Subscribed:
    channel: str
    topic: str


@dataclass(frozen=True)
class ConsentState:
    channel: str
    topic: str


@dataclass(frozen=True)
class Near:
    """The user's last known location is at most `km` kilometres (great-circle) from
    (`latitude`, `longitude`) in degrees, and was taken within `within` (None: ever)."""

    latitude: float
    longitude: float
    km: float
    within: timedelta | None = None


@dataclass(frozen=True)
class Compare:
    left: Attr | Count | ConsentState
    op: str
    value: Any


@dataclass(frozen=True)
class Member:
    left: Attr
    values: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Attr | Did | Subscribed | Near | Compare | Member | Not | And | Or
Operand = Attr | Did | Count | Subscribed | ConsentState | Node


# -- parsing -------------------------------------------------------------------------------


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


class _Invalid(Exception):
    def __init__(self, reason: str, where: Token | Tree[Any] | None) -> None:
        super().__init__(reason)
        self.reason = reason
        meta = getattr(where, "meta", None)
        self.line = getattr(where, "line", None) or getattr(meta, "line", None) or 1
        self.column = getattr(where, "column", None) or getattr(meta, "column", None) or 1


def _literal(value: Any, token: Token | Tree[Any] | None) -> Any:
    if isinstance(value, Attr | Did | Count | Subscribed | ConsentState | Near | Compare | Not):
        raise _Invalid("expected a value (a string, number, true, false, null or list)", token)
    return value


@v_args(meta=True)
class _Build(Transformer[Token, Any]):
    def string(self, meta: Any, children: list[Token]) -> str:
        raw = children[0][1:-1]
        return raw.encode("latin-1", "backslashreplace").decode("unicode_escape")

    def number(self, meta: Any, children: list[Token]) -> int | float:
        text = str(children[0])
        return float(text) if any(c in text for c in ".eE") else int(text)

    def true(self, meta: Any, children: list[Any]) -> bool:
        return True

    def false(self, meta: Any, children: list[Any]) -> bool:
        return False

    def null(self, meta: Any, children: list[Any]) -> None:
        return None

    def sequence(self, meta: Any, children: list[Any]) -> tuple[Any, ...]:
        return tuple(children)

    def mapping(self, meta: Any, children: list[tuple[str, Any]]) -> dict[str, Any]:
        return dict(children)

    def pair(self, meta: Any, children: list[Any]) -> tuple[str, Any]:
        return self.string(meta, [children[0]]), children[1]

    def name(self, meta: Any, children: list[Token]) -> Attr:
        path = tuple(str(c) for c in children)
        if path[0] in PROFILE_FIELDS and len(path) > 1:
            raise _Invalid(f"{path[0]} is a text field of the profile, not an object", children[1])
        return Attr(path)

    def positional(self, meta: Any, children: list[Any]) -> tuple[None, Any, Any]:
        return None, children[0], meta

    def keyword(self, meta: Any, children: list[Any]) -> tuple[str, Any, Any]:
        return str(children[0]), children[1], meta

    def call(self, meta: Any, children: list[Any]) -> Any:
        function, arguments = children[0], children[1:]
        where: Tree[Any] = Tree("call", [], meta)
        positional = [value for key, value, _ in arguments if key is None]
        keywords = {key: (value, at) for key, value, at in arguments if key is not None}
        if function in ("did", "count"):
            return _events_call(str(function), positional, keywords, where)
        if function in ("subscribed", "consent"):
            return _consent_call(str(function), positional, keywords, where)
        if function == "near":
            return _near_call(positional, keywords, where)
        raise _Invalid(
            f"unknown function {function!s}(): use did, count, subscribed, consent or near",
            function,
        )

    def compare(self, meta: Any, children: list[Any]) -> Compare:
        left, op, value = children
        where: Tree[Any] = Tree("compare", [], meta)
        if isinstance(left, Count):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Invalid("count(...) compares with a number", where)
        elif isinstance(left, ConsentState):
            if op not in ("==", "!=") or value not in CONSENT_STATES:
                raise _Invalid(
                    f"consent(...) compares with == or != to one of {', '.join(CONSENT_STATES)}",
                    where,
                )
        elif isinstance(left, Attr):
            _literal(value, where)
            if isinstance(value, tuple | dict):
                raise _Invalid(
                    "compare an attribute with one value (use `in [...]` for many)", where
                )
            if op not in ("==", "!=") and (isinstance(value, bool) or value is None):
                raise _Invalid(f"{op} needs a number or a string", where)
        else:
            raise _Invalid("only attributes, count(...) and consent(...) can be compared", where)
        return Compare(left=left, op=str(op), value=value)

    def member(self, meta: Any, children: list[Any], negated: bool = False) -> Member:
        left, values = children
        if not isinstance(left, Attr):
            raise _Invalid("only an attribute can be `in` a list", Tree("member", [], meta))
        return Member(left=left, values=tuple(values), negated=negated)

    def not_member(self, meta: Any, children: list[Any]) -> Member:
        return self.member(meta, children, negated=True)

    def negate(self, meta: Any, children: list[Any]) -> Not:
        return Not(_boolean(children[0], Tree("not", [], meta)))

    def and_expr(self, meta: Any, children: list[Any]) -> And:
        return And(tuple(_boolean(c, Tree("and", [], meta)) for c in children))

    def or_expr(self, meta: Any, children: list[Any]) -> Or:
        return Or(tuple(_boolean(c, Tree("or", [], meta)) for c in children))


def _boolean(node: Any, where: Tree[Any]) -> Node:
    if isinstance(node, Count | ConsentState):
        raise _Invalid("count(...) and consent(...) need a comparison (e.g. `>= 2`)", where)
    if not isinstance(node, Attr | Did | Subscribed | Near | Compare | Member | Not | And | Or):
        raise _Invalid("expected a condition, found a bare value", where)
    return node


def _events_call(
    function: str, positional: list[Any], keywords: dict[str, Any], where: Tree[Any]
) -> Did | Count:
    if len(positional) != 1 or not isinstance(positional[0], str) or not positional[0]:
        raise _Invalid(f'{function}() takes the event name first: {function}("App Opened")', where)
    unknown = set(keywords) - {"within", "where"}
    if unknown:
        raise _Invalid(f"{function}() has no argument {sorted(unknown)[0]!r}", where)
    within = _within(keywords)
    filters: dict[str, Any] = {}
    if "where" in keywords:
        value, at = keywords["where"]
        if not isinstance(value, dict) or any(
            isinstance(v, tuple | dict) or v is None for v in value.values()
        ):
            raise _Invalid(
                'where= takes a mapping of property to value: where={"plan": "pro"}',
                Tree("", [], at),
            )
        filters = value
    events = EventFilter(event=positional[0], within=within, where=filters)
    return Did(events) if function == "did" else Count(events)


def _within(keywords: dict[str, Any]) -> timedelta | None:
    """The `within=` duration of a call (None when absent); positive, or `_Invalid`."""
    if "within" not in keywords:
        return None
    value, at = keywords["within"]
    try:
        within = parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        within = None
    if not isinstance(within, timedelta) or within <= timedelta(0):
        raise _Invalid('within= takes a positive duration such as "14d" or "12h"', Tree("", [], at))
    return within


def _number(value: Any) -> float | None:
    """A finite number as a float (a 400-digit integer too big for one: None), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _near_call(positional: list[Any], keywords: dict[str, Any], where: Tree[Any]) -> Near:
    usage = "near() takes a latitude, a longitude and a radius: near(52.52, 13.405, km=5)"
    if len(positional) != 2 or "km" not in keywords:
        raise _Invalid(usage, where)
    unknown = set(keywords) - {"km", "within"}
    if unknown:
        raise _Invalid(f"near() has no argument {sorted(unknown)[0]!r}", where)
    latitude, longitude = _number(positional[0]), _number(positional[1])
    if latitude is None or not -90 <= latitude <= 90:
        raise _Invalid("near(): the latitude is a number from -90 to 90", where)
    if longitude is None or not -180 <= longitude <= 180:
        raise _Invalid("near(): the longitude is a number from -180 to 180", where)
    km, at = keywords["km"]
    radius = _number(km)
    if radius is None or radius <= 0:
        raise _Invalid("km= takes a positive number of kilometres", Tree("", [], at))
    return Near(latitude, longitude, radius, _within(keywords))


def _consent_call(
    function: str, positional: list[Any], keywords: dict[str, Any], where: Tree[Any]
) -> Subscribed | ConsentState:
    if not positional or positional[0] not in CHANNELS:
        raise _Invalid(f"{function}() takes a channel first: one of {', '.join(CHANNELS)}", where)
    topic = positional[1] if len(positional) > 1 else keywords.pop("topic", ("marketing", None))[0]
    if len(positional) > 2 or set(keywords) - {"topic"} or not isinstance(topic, str):
        raise _Invalid(
            f'{function}() takes a channel and a topic: {function}("sms", "news")', where
        )
    return (
        Subscribed(positional[0], topic)
        if function == "subscribed"
        else ConsentState(positional[0], topic)
    )


def parse(text: str, *, source: str = "<segment>", line: int = 1) -> Node:
    """Parse one expression; `source`/`line` say where it was written (for errors).

    Raises `SegmentError` with the position (line and column in `source`) and the reason.
    """
    try:
        tree = _parser().parse(text)
        node = _Build().transform(tree)
    except VisitError as error:
        inner = error.orig_exc
        if isinstance(inner, _Invalid):
            raise SegmentError(
                inner.reason, source=source, line=line + inner.line - 1, column=inner.column
            ) from None
        raise
    except UnexpectedInput as error:
        raise SegmentError(
            _unexpected(error, text),
            source=source,
            line=line + max(error.line, 1) - 1,
            column=max(error.column, 1) if error.column != "?" else 1,  # type: ignore[comparison-overlap]
        ) from None
    return _boolean(node, Tree("start", []))


def _unexpected(error: UnexpectedInput, text: str) -> str:
    token = getattr(error, "token", None)
    if isinstance(error, UnexpectedEOF) or getattr(token, "type", None) == "$END":
        return "the expression ends too soon"
    if isinstance(error, UnexpectedCharacters):
        return f"unexpected character {text[error.pos_in_stream or 0]!r}"
    expected = sorted(getattr(error, "expected", ()) or ())
    shown = ", ".join(_NAMES.get(e, e.lower()) for e in expected[:6])
    return f"unexpected {str(token)!r}" + (f"; expected {shown}" if shown else "")


_NAMES = {
    "RPAR": "')'",
    "LPAR": "'('",
    "COMMA": "','",
    "CNAME": "a name",
    "STRING": "a string",
    "SIGNED_NUMBER": "a number",
    "COMPARATOR": "a comparison",
    "_AND": "'and'",
    "_OR": "'or'",
    "_IN": "'in'",
    "_NOT": "'not'",
    "RSQB": "']'",
    "RBRACE": "'}'",
    "COLON": "':'",
    "EQUAL": "'='",
    "DOT": "'.'",
    "LBRACE": "'{'",
    "LSQB": "'['",
    "_TRUE": "true",
    "_FALSE": "false",
    "_NULL": "null",
}
