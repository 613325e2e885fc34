"""Templates: every shipped one renders for a bare profile; strictness; locale fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.app.journeys import shipped_templates, template_store
from engine.delivery.templates import CODE_LENGTH, LINKS, LinkBook, TemplateError, TemplateStore

DEFAULT_ROOT = shipped_templates()

SHIPPED = sorted(DEFAULT_ROOT.rglob("*.liquid"))
BARE = {"user": {}, "event": {"name": "X", "properties": {}}, "settings": {}, "variant": None}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(DEFAULT_ROOT)))
def test_every_shipped_template_renders_for_a_bare_profile(path: Path) -> None:
    # The gate gives every render a link book (tracked links need one).
    context = {**BARE, LINKS: LinkBook(base="https://n.example")}
    content = template_store().render_source(path.read_text(), context, name=str(path))
    assert content.title or content.body or content.sms


def test_undefined_variables_fail_unless_defaulted(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "m.liquid").write_text("--- body ---\nHi {{ user.nickname }}\n")
    (tmp_path / "j" / "ok.liquid").write_text(
        '--- body ---\nHi {{ user.nickname | default: "there" }}\n'
    )
    store = TemplateStore(tmp_path)
    with pytest.raises(TemplateError, match="nickname"):
        store.render("j", "m", locale=None, context=BARE)
    assert store.render("j", "ok", locale=None, context=BARE).body == "Hi there"


def test_locale_falls_back_to_language_then_default(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    for name, text in {
        "m.liquid": "Hello",
        "m.fr.liquid": "Bonjour",
        "m.fr-CA.liquid": "Allo",
    }.items():
        (tmp_path / "j" / name).write_text(f"--- body ---\n{text}\n")
    store = TemplateStore(tmp_path)
    assert store.render("j", "m", locale="fr-CA", context=BARE).body == "Allo"
    assert store.render("j", "m", locale="fr_BE", context=BARE).body == "Bonjour"
    assert store.render("j", "m", locale="de", context=BARE).body == "Hello"
    assert store.render("j", "m", locale=None, context=BARE).body == "Hello"


def test_one_file_holds_every_part(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "m.liquid").write_text(
        "--- title ---\nT {{ event.name }}\n--- body ---\nB\n--- sms ---\nS\n"
        '--- push ---\nbadge: 2\nsound: default\n--- data ---\ncart: "{{ event.name }}"\n'
    )
    content = TemplateStore(tmp_path).render("j", "m", locale=None, context=BARE)
    assert (content.title, content.body, content.sms) == ("T X", "B", "S")
    assert content.push.badge == 2 and content.data == {"cart": "X"}
    with pytest.raises(TemplateError, match="unknown part"):
        TemplateStore(tmp_path).render_source("--- footer ---\nx", BARE, name="t")


def test_track_link_makes_a_short_link_per_use_and_refuses_what_it_cannot_track() -> None:
    store = TemplateStore(Path("."))
    book = LinkBook(base="https://n.example/")
    source = (
        '--- sms ---\n{{ "https://a.example/x" | track_link }} '
        '{{ "https://b.example" | track_link }}'
    )
    content = store.render_source(source, {LINKS: book}, name="t")
    first, second = (content.sms or "").split()
    assert [url for _, url in book.links] == ["https://a.example/x", "https://b.example"]
    assert (
        first == f"https://n.example/c/{book.links[0][0]}" and len(book.links[0][0]) == CODE_LENGTH
    )
    assert second.endswith(book.links[1][0]) and book.links[0][0] != book.links[1][0]
    with pytest.raises(TemplateError, match="no link base"):
        store.render_source(source, {}, name="t")
    with pytest.raises(TemplateError, match="absolute http"):
        store.render_source(
            '--- sms ---\n{{ "javascript:alert(1)" | track_link }}', {LINKS: book}, name="t"
        )
