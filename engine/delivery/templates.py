"""Message templates: Liquid files beside their journey, with locale variants.

One file holds every part of a message, each under a `--- part ---` line:

    --- title ---
    Still thinking it over, {{ user.first_name | default: "friend" }}?
    --- body ---
    Your cart is waiting.
    --- sms ---
    Your cart is waiting: {{ event.properties.url | default: "" }} Reply STOP to opt out.
    --- push ---
    sound: default
    badge: 1
    --- data ---
    cart_id: "{{ event.properties.cart_id | default: '' }}"

`{{ "https://shop.example/cart" | track_link }}` turns a URL into a short tracked link
(`<link base>/c/<code>`), recorded for the message (see `LinkBook`).

`title`, `body`, `sms` and `url` are text; `push` (PushOptions) and `data` are YAML after
rendering. Lookup: `<name>.<locale>.liquid` (e.g. fr-CA), then its language (`fr`), then
`<name>.liquid`. Undefined variables are errors unless given a `default` filter; any error
makes the whole message a `render_failed` suppression, never a half-rendered message.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from liquid import BoundTemplate, Environment, RenderContext, StrictDefaultUndefined
from liquid.exceptions import LiquidError
from liquid.filter import with_context
from pydantic import ValidationError

from engine.channels.base import Content, PushOptions

TEXT_PARTS = ("title", "body", "sms", "url")
YAML_PARTS = ("push", "data")
_PART = re.compile(r"^---\s*([a-z_]+)\s*---\s*$", re.MULTILINE)


class TemplateError(Exception):
    """A template is missing or does not render; the message is suppressed `render_failed`."""


LINKS = "__nudge_links__"
"""The render-context key under which a send's `LinkBook` travels to `track_link`."""
CODE_LENGTH = 10
"""Characters of a link code: 62**10 (about 8e17) codes, random, so none can be guessed."""
_ALPHABET = string.ascii_letters + string.digits


@dataclass
class LinkBook:
    """The tracked links one render made: `track_link` adds each target and returns its
    short link on `base` (e.g. `https://n.example`). The gate stores them with the message
    in the same transaction; a render without a book (no base URL) fails the message."""

    base: str
    links: list[tuple[str, str]] = field(default_factory=list)
    """(code, target URL), in the order the template used them."""

    def add(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("track_link needs an absolute http(s) URL")
        code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
        self.links.append((code, url))
        return f"{self.base.rstrip('/')}/c/{code}"


@with_context
def track_link(value: object, *, context: RenderContext) -> str:
    """`{{ url | track_link }}`: the short tracked link for `url` (see `LinkBook`)."""
    book = context.globals.get(LINKS)
    if not isinstance(book, LinkBook):
        raise LiquidError("track_link: no link base URL for this render", token=None)
    try:
        return book.add(str(value))
    except ValueError as exc:
        raise LiquidError(f"track_link: {exc}", token=None) from None


def split_parts(source: str, *, name: str = "template") -> dict[str, str]:
    """Split a template file into its named parts."""
    matches = list(_PART.finditer(source))
    if not matches:
        raise TemplateError(f"{name}: no `--- part ---` line (title, body, sms, url, push, data)")
    parts: dict[str, str] = {}
    for i, match in enumerate(matches):
        part = match.group(1)
        if part not in TEXT_PARTS + YAML_PARTS:
            raise TemplateError(f"{name}: unknown part {part!r}")
        end = matches[i + 1].start() if i + 1 < len(matches) else len(source)
        parts[part] = source[match.end() : end].strip("\n")
    return parts


class TemplateStore:
    """Finds and renders templates under `<root>/<journey>/`, first root first."""

    def __init__(self, *roots: Path) -> None:
        if not roots:
            raise ValueError(
                "a TemplateStore needs at least one root (engine.app: shipped_templates)"
            )
        self.roots = roots
        self._env = Environment(undefined=StrictDefaultUndefined)
        self._env.add_filter("track_link", track_link)
        self._compiled: dict[Path, tuple[int, dict[str, BoundTemplate]]] = {}

    def find(self, journey: str, name: str, locale: str | None) -> Path:
        """The file for `name` in the best locale: exact, then language, then default."""
        candidates: list[str] = []
        if locale:
            normal = locale.replace("_", "-")
            candidates += [normal, normal.split("-")[0]]
        for root in self.roots:
            for tag in [*candidates, None]:
                path = root / journey / (f"{name}.{tag}.liquid" if tag else f"{name}.liquid")
                if path.is_file():
                    return path
        raise TemplateError(f"template {journey}/{name} not found")

    def names(self, journey: str) -> list[str]:
        """The journey's template names (locale variants folded into one), sorted."""
        found: set[str] = set()
        for root in self.roots:
            folder = root / journey
            if folder.is_dir():
                found.update(path.name.split(".")[0] for path in folder.glob("*.liquid"))
        return sorted(found)

    def render(
        self, journey: str, name: str, *, locale: str | None, context: dict[str, Any]
    ) -> Content:
        """Render every part; raise `TemplateError` on any failure."""
        path = self.find(journey, name, locale)
        # Parsed once per file version: sends render, they do not re-read and re-parse.
        stamp = path.stat().st_mtime_ns
        cached = self._compiled.get(path)
        if cached is None or cached[0] != stamp:
            parts = self._compile(path.read_text(encoding="utf-8"), name=str(path))
            self._compiled[path] = cached = (stamp, parts)
        return self._render(cached[1], context, name=str(path))

    def render_source(self, source: str, context: dict[str, Any], *, name: str) -> Content:
        """Render template text that is not in the store (previews, tests)."""
        return self._render(self._compile(source, name=name), context, name=name)

    def _compile(self, source: str, *, name: str) -> dict[str, BoundTemplate]:
        try:
            return {
                part: self._env.from_string(text)
                for part, text in split_parts(source, name=name).items()
            }
        except LiquidError as exc:
            raise TemplateError(f"{name}: {str(exc).splitlines()[0]}") from exc

    def _render(
        self, parts: dict[str, BoundTemplate], context: dict[str, Any], *, name: str
    ) -> Content:
        rendered: dict[str, Any] = {}
        try:
            for part, template in parts.items():
                out = template.render(**context).strip()
                if part in YAML_PARTS:
                    loaded = yaml.safe_load(out) if out else {}
                    if not isinstance(loaded, dict):
                        raise TemplateError(f"{name}: part {part!r} must be a YAML mapping")
                    rendered[part] = (
                        {str(k): "" if v is None else str(v) for k, v in loaded.items()}
                        if part == "data"
                        else loaded
                    )
                else:
                    rendered[part] = out or None
            return Content(
                title=rendered.get("title"),
                body=rendered.get("body"),
                sms=rendered.get("sms"),
                url=rendered.get("url"),
                data=rendered.get("data", {}),
                push=PushOptions.model_validate(rendered.get("push", {})),
            )
        except LiquidError as exc:
            # The first line names the variable and position; no message text is included.
            raise TemplateError(f"{name}: {str(exc).splitlines()[0]}") from exc
        except (yaml.YAMLError, ValidationError) as exc:
            raise TemplateError(f"{name}: {type(exc).__name__}") from exc
