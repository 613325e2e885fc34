"""The web console (`/ui`) on the real stack, over HTTP and in a real browser.

The stack runs the test journeys on Postgres and the Temporal dev server; the API (with the
console mounted as `nudge api` mounts it) is served by uvicorn on a free port, so headless
Chromium (Debian's `chromium`, driven by Playwright through `executable_path`) talks to it
as a person's browser would. Screenshots are checked not to be blank.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image, ImageStat
from playwright.async_api import Page, async_playwright
from temporalio.client import Client

from engine.app.api import mount_console
from engine.store import keys
from schemas.common import KeyScope
from tests.journeys import TEST_JOURNEYS
from tests.kit.stack import Stack, kit_templates

CHROMIUM = "/usr/bin/chromium"
USERS = ("ann", "bob", "cyd", "dee")
PHONES = {"ann": "+33612345678"}


@dataclass
class Console:
    stack: Stack
    base: str
    read_key: str
    source_key: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
async def console(
    postgres_engine: object, temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    """Four users through the split journey (one converts), served on a real port."""
    from tests.conftest import POSTGRES_SCHEMA, POSTGRES_URL, truncate

    await truncate(postgres_engine)  # type: ignore[arg-type]
    journeys = {"t_split": TEST_JOURNEYS["t_split"]}
    async with Stack(
        database_url=f"{POSTGRES_URL}#schema={POSTGRES_SCHEMA}",
        client=temporal_client,
        task_queue="console-" + tmp_path_factory.mktemp("q").name[-8:],
        journeys=journeys,
    ) as stack:
        mount_console(stack.app, stack.context, journeys=journeys, templates=kit_templates())
        async with stack.context.sessions() as db:
            read_key = await keys.create_key(db, name="growth", scope=KeyScope.READ)
            source_key = await keys.create_key(db, name="app", scope=KeyScope.SOURCE)
            await db.commit()
        for user in USERS:
            phone = {"phone": PHONES[user]} if user in PHONES else {}
            await stack.profile(
                user, email=f"{user}@example.com", attributes={"first_name": user.title()}, **phone
            )
            await stack.device(user)
            await stack.track(user, "Split Start")
        await stack.wait_runs("ann")
        await stack.track("ann", "Split Goal")
        for user in USERS:
            await stack.wait_closed(user)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(stack.app, host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.05)
        try:
            yield Console(stack, f"http://127.0.0.1:{port}", read_key, source_key)
        finally:
            server.should_exit = True
            await serving


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def test_sign_in_needs_a_read_key_a_csrf_token_and_a_live_key(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.base) as http:
        page = await http.get("/ui/journeys")
        assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")
        login = await http.get("/ui/login")
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        token = _csrf(login.text)
        forged = await http.post("/ui/login", data={"key": console.read_key, "csrf": "x"})
        assert forged.status_code == 403
        source = await http.post("/ui/login", data={"key": console.source_key, "csrf": token})
        assert source.status_code == 401 and "read or admin key" in source.text
        signed = await http.post(
            "/ui/login", data={"key": console.read_key, "csrf": token, "next": "//evil.example"}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/journeys"
        assert console.read_key not in signed.headers["set-cookie"]
        listed = await http.get("/ui/journeys")
        assert listed.status_code == 200 and "t_split" in listed.text
        assert "default-src 'self'" in listed.headers["content-security-policy"]
        # Every script and style sheet comes from this origin (no CDN).
        assert not re.search(r'(src|href)="https?://', listed.text)
        logout = await http.post("/ui/logout", data={"csrf": "stale"})
        assert logout.status_code == 403
        async with console.stack.context.sessions() as db:
            await keys.revoke(db, which="growth")
            await db.commit()
        revoked = await http.get("/ui/journeys")
        assert revoked.status_code == 303
    async with console.stack.context.sessions() as db:
        console.read_key = await keys.create_key(db, name="growth2", scope=KeyScope.READ)
        await db.commit()


async def test_docs_and_redoc_load_their_assets_from_the_api(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.base) as http:
        for path in ("/docs", "/redoc"):
            html = (await http.get(path)).text
            assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
            assert assets and all(a.startswith("/") for a in assets), assets
            for asset in assets:
                fetched = await http.get(asset)
                assert fetched.status_code == 200 and len(fetched.content) > 10_000


def _not_blank(png: bytes, path: Path) -> None:
    """The screenshot has content: many colours and real contrast, not one flat fill."""
    path.write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20, f"{path}: {len(colours or [])} colours"
    spread = ImageStat.Stat(image.convert("L")).stddev[0]
    assert spread > 10, f"{path}: grey-level spread {spread:.1f}"


async def _shot(page: Page, folder: Path, name: str) -> None:
    _not_blank(await page.screenshot(full_page=True), folder / f"{name}.png")


async def test_a_person_follows_a_journey_a_user_and_a_message_in_chromium(
    console: Console, tmp_path: Path
) -> None:
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            await page.goto(f"{console.base}/ui/journeys")
            await page.fill("input[name=key]", console.read_key)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/ui/journeys")
            await _shot(page, tmp_path, "journeys")

            await page.click("a[href='/ui/journeys/t_split']")
            await page.wait_for_url("**/ui/journeys/t_split")
            assert await page.inner_text("#entered") == str(len(USERS))
            funnel = page.locator("#funnel svg rect.bar-reached")
            assert await funnel.count() == 1 and await funnel.get_attribute("width") != "0"
            arms = {run["variant"] for user in USERS for run in await console.stack.runs(user)}
            assert await page.locator("#variants .funnel").count() == len(arms - {None})
            assert await page.locator("table.readout tbody tr").count() >= 1
            await _shot(page, tmp_path, "funnel")

            await page.click("nav a[href='/ui/users']")
            await page.fill("#q", "06 12 34 56 78")  # not E.164: no match, then the real one
            await page.press("#q", "Enter")
            await page.wait_for_selector("#users td.muted")
            await page.fill("#q", "+33 6 12 34 56 78")
            await page.press("#q", "Enter")
            await page.wait_for_selector("#users a[href='/ui/users/ann']")
            assert await page.locator("#users tbody tr").count() == 1
            await _shot(page, tmp_path, "search")

            await page.click("#users a[href='/ui/users/ann']")
            await page.wait_for_url("**/ui/users/ann")
            assert await page.locator("#timeline tr.k-event").count() >= 1
            assert await page.locator("#timeline tr.k-entry").count() == 1
            temporal = page.locator("#user-runs a.temporal")
            assert "/namespaces/default/workflows/" in (await temporal.get_attribute("href") or "")
            await _shot(page, tmp_path, "timeline")

            await page.locator("#timeline a.message-link").first.click()
            await page.wait_for_url("**/ui/messages/m_*")
            assert "t_split" in await page.inner_text("#message")
            await page.wait_for_selector("#attempts")
            await _shot(page, tmp_path, "message")

            await page.click("nav a[href='/ui/messages']")
            await page.select_option("select[name=journey]", "t_split")
            await page.click("form.filters button[type=submit]")
            await page.wait_for_selector("#message-rows a.message-link")
            assert await page.locator("#message-rows a.message-link").count() == len(USERS)

            await page.goto(f"{console.base}/ui/preview?template=t_split/split_msg&user=ann")
            assert "Variant" in await page.inner_text("#push-card")
            await _shot(page, tmp_path, "preview")
            assert not [url for url in failed if not url.startswith(console.base)], failed
        finally:
            with contextlib.suppress(Exception):
                await browser.close()


async def test_message_search_pages_and_the_sms_preview(console: Console) -> None:
    """Sixty messages of one template come back fifty at a time, newest first, the next
    page through the "older messages" link (as htmx asks for it); an SMS previews with its
    encoding and part count."""
    from datetime import UTC, datetime, timedelta

    from engine.store.models import Message
    from engine.store.users import find_user

    async with console.stack.context.sessions() as db:
        bob = await find_user(db, external_id="bob")
        assert bob is not None
        start = datetime(2026, 11, 1, tzinfo=UTC)
        for n in range(60):
            stamp = start + timedelta(minutes=n)
            db.add(
                Message(
                    id=f"m_bulk{n:04d}",
                    idempotency_key=f"bulk/{n}",
                    user_id=bob.id,
                    journey="bulk",
                    step="bulk_step",
                    channel="sms",
                    template="bulk_sms",
                    status="failed",
                    attempts=1,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
        await db.commit()
    async with httpx.AsyncClient(base_url=console.base) as http:
        login = await http.get("/ui/login")
        signed = await http.post(
            "/ui/login", data={"key": console.read_key, "csrf": _csrf(login.text)}
        )
        assert signed.status_code == 303
        query = "template=bulk_sms&status=failed&channel=sms&since=2026-11-01T00:00"
        first = await http.get(f"/ui/messages?{query}")
        ids = re.findall(r'href="/ui/messages/(m_bulk\d+)"', first.text)
        assert len(ids) == 50 and ids[0] == "m_bulk0059" and ids[-1] == "m_bulk0010"
        more = re.search(r'hx-get="([^"]+page=rows)"', first.text)
        assert more, "no link to older messages"
        rest = await http.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
        older = re.findall(r'href="/ui/messages/(m_bulk\d+)"', rest.text)
        assert older == [f"m_bulk{n:04d}" for n in range(9, -1, -1)]
        assert "<html" not in rest.text and "Older messages" not in rest.text
        narrow = await http.get(f"/ui/messages?{query}&until=2026-11-01T00:05")
        assert len(re.findall(r'href="/ui/messages/m_bulk', narrow.text)) == 5
        bad = await http.get("/ui/messages?status=lost")
        assert bad.status_code == 400 and "status: one of" in bad.text
        preview = await http.get(
            "/ui/preview", params={"template": "abandoned_cart/cart_last_call", "user": "ann"}
        )
        assert preview.status_code == 200
        assert re.search(r'id="sms-meta">gsm7, 1 part ·', preview.text), preview.text[-1500:]
        assert "Last call, Ann" in preview.text
        unknown = await http.get(
            "/ui/preview", params={"template": "abandoned_cart/cart_last_call", "user": "zed"}
        )
        assert unknown.status_code == 400 and "no user" in unknown.text


def test_the_wheel_carries_every_console_file() -> None:
    """Each template and asset matches the package data the wheel is built with."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    package = root / "triggers" / "console"
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = data["package-data"]["triggers.console"]
    files = [p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()]
    shipped = [f for f in files if not f.endswith((".py", ".pyc")) and "__pycache__" not in f]
    assert "static/htmx.min.js" in shipped and "templates/base.html" in shipped
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in shipped), shipped
