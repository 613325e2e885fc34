"""`JourneySettings`, the base of every journey's settings model, and why a subclass is made
once per worker rather than once per run.

Temporal's sandbox re-imports a journey's module for every run it starts, so the module's
`class MySettings(JourneySettings)` statement runs again each time. Building a pydantic model
(its fields, core schema, validator and serializer) inside the sandbox was about a tenth of
the worker's CPU per run. A settings class is plain data, the kind of class Temporal advises
passing through the sandbox, so when a run's sandbox executes a class statement that is the
same as the one the worker executed outside it, the class made outside is used.

"The same" is checked strictly, and anything else builds the class anew, as before:
- the same module, qualified name and bases (the very objects), and no class keywords;
- a body of plain data only (fields' defaults and `model_config`: numbers, strings, dates,
  durations, enum members, and tuples, lists, sets and dicts of them), each value equal and
  of the very same type as outside (an enum member of a class the journey's module defines
  is not: the sandbox made that class anew);
- every annotation resolving, in the sandboxed module, to an object equal to what it
  resolved to outside (`list[Mode]` for a `Mode` the sandbox re-made is not).
A validator, a method, a `Field(...)` or a nested class in the body keeps the per-run build.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from types import CodeType
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic._internal._model_construction import ModelMetaclass
from temporalio import workflow

_PLAIN = (type(None), bool, int, float, str, bytes, Decimal, date, time, datetime, timedelta, Enum)
_CONTAINERS = (tuple, list, frozenset, set)
_BOOKKEEPING = frozenset({"__module__", "__qualname__", "__annotations__"})


@dataclass(frozen=True)
class _Statement:
    """What a class statement produced, before the class is made from it."""

    bases: tuple[type, ...]
    body: dict[str, object]
    hints: dict[str, object]

    def same_as(self, other: _Statement) -> bool:
        return (
            self.bases == other.bases  # classes compare by identity
            and _same_value(self.body, other.body)
            and self.hints.keys() == other.hints.keys()
            and all(_same_hint(hint, other.hints[field]) for field, hint in self.hints.items())
        )


_MADE: dict[tuple[str, str], tuple[type, _Statement]] = {}
"""Settings classes made outside the sandbox, by (module, qualified name), with the statement
each was made from."""


class _SettingsMeta(ModelMetaclass):
    """pydantic's model metaclass, reusing outside-made settings classes in the sandbox."""

    def __new__(
        mcs,
        cls_name: str,
        bases: tuple[type[Any], ...],
        namespace: dict[str, Any],
        **kwargs: Any,
    ) -> type:
        key = (str(namespace.get("__module__")), str(namespace.get("__qualname__")))
        shareable = not kwargs and "<locals>" not in key[1]
        if workflow.unsafe.in_sandbox():
            made = _MADE.get(key) if shareable else None
            if made is not None:
                statement = _statement(bases, namespace)
                if statement is not None and statement.same_as(made[1]):
                    return made[0]
            return super().__new__(mcs, cls_name, bases, namespace, **kwargs)
        # Read before pydantic makes the class: it adds its own entries to the namespace.
        statement = _statement(bases, namespace) if shareable else None
        cls = super().__new__(mcs, cls_name, bases, namespace, **kwargs)
        if statement is not None:
            _MADE[key] = (cls, statement)
        return cls


def _statement(bases: tuple[type, ...], namespace: dict[str, Any]) -> _Statement | None:
    """The statement's bases, plain body and resolved annotations; None when any of it is
    not plain data or does not resolve."""
    body = {name: value for name, value in namespace.items() if name not in _BOOKKEEPING}
    if not all(_plain(value) for value in body.values()):
        return None
    module = sys.modules.get(str(namespace.get("__module__")))
    if module is None:
        return None
    hints: dict[str, object] = {}
    for field, hint in namespace.get("__annotations__", {}).items():
        if isinstance(hint, str):
            try:
                hint = eval(_compiled(hint), vars(module))  # as pydantic evaluates it
            except (NameError, AttributeError, SyntaxError, TypeError):
                return None  # e.g. a name imported only under TYPE_CHECKING
        hints[field] = hint
    return _Statement(bases=bases, body=body, hints=hints)


@functools.cache
def _compiled(annotation: str) -> CodeType:
    """An annotation's code, compiled once: the sandbox evaluates it again for every run."""
    return compile(annotation, "<annotation>", "eval")


def _plain(value: object) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, _CONTAINERS):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


def _same_value(a: object, b: object) -> bool:
    """Equal, and of the very same types all the way down (an enum re-made by the sandbox is
    another type)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(v, b[k]) for k, v in a.items())
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Enum):
        return a is b
    if isinstance(a, frozenset | set):
        # Sets of plain values: equal, and every member's type among the other's.
        return a == b and {type(x) for x in a} == {type(y) for y in b}
    return a == b


def _same_hint(a: object, b: object) -> bool:
    """The same annotation: one object, or equal typing forms (whose arguments compare
    classes by identity, so a re-made class never matches)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # an annotation that cannot compare: build anew
        return False


class JourneySettings(BaseModel, metaclass=_SettingsMeta):
    """Base for a journey's settings: fields with defaults that an entry may override.

    Keep a subclass plain data (fields with defaults): the worker then makes it once and
    every run's sandbox reuses it (see this module's docstring); with validators or
    methods it is rebuilt for each run, which is correct but costs the worker's CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)
