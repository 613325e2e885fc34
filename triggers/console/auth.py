"""Signing in to the console with a read or admin API key; CSRF tokens on every POST.

The session is Starlette's signed cookie (`SessionMiddleware`, itsdangerous): HttpOnly,
`SameSite=Strict`, scoped to `/ui`, holding only the key's id and the CSRF token, never
the key. Every page looks the key up again, so revoking it ends its sessions. Every form
that posts carries the session's CSRF token (compared in constant time); signing in makes a
new session and a new token (no fixation). Failed sign-ins count against the API's limit
of failed authentications per address.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engine.store import keys
from schemas.common import KeyScope
from triggers.console.views import deps, render

router = APIRouter()


class CsrfRejected(Exception):
    """A POST without the session's CSRF token."""


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """The dependency of every POST: the form's `csrf` (or `X-CSRF-Token`) must match."""
    expected = request.session.get("csrf")
    form = await request.form()
    sent = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not isinstance(expected, str) or not isinstance(sent, str):
        raise CsrfRejected
    if not expected or not hmac.compare_digest(expected, sent):
        raise CsrfRejected


def _safe_next(target: object) -> str:
    """Only a path inside the console is followed after signing in (no open redirect)."""
    if isinstance(target, str) and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/journeys"


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/ui/journeys") -> HTMLResponse:
    csrf_token(request)
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
async def login(request: Request) -> Response:
    form = await request.form()
    key = form.get("key")
    target = _safe_next(form.get("next"))
    access = deps(request).access
    if access is not None and not access.may_sign_in(request):
        error = "too many failed sign-ins from this address: wait a minute"
        return render(request, "login.html", {"next": target, "error": error}, status_code=429)
    found = None
    if isinstance(key, str) and key.strip():
        async with deps(request).context.sessions() as session:
            found = await keys.lookup(session, key=key.strip())
    if found is None or not found.scope.allows(KeyScope.READ):
        if access is not None:
            access.failed_sign_in(request)
        error = (
            "this key may only send data: sign in with a read or admin key"
            if found is not None
            else "unknown or revoked key"
        )
        return render(request, "login.html", {"next": target, "error": error}, status_code=401)
    request.session.clear()
    request.session["key_id"] = found.id
    request.session["csrf"] = secrets.token_urlsafe(32)
    return RedirectResponse(target, status_code=303)


@router.post("/logout", dependencies=[Depends(check_csrf)])
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/ui/login", status_code=303)
