"""Signing in with an API key and out again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tuneyard.api.deps import Context
from tuneyard.console.auth import CSRF_FIELD, CurrentViewer, Sessions, same_origin
from tuneyard.console.sessions import COOKIE_NAME, SESSION_TTL_S, tokens_match
from tuneyard.console.views import page
from tuneyard.store import tenancy

router = APIRouter(include_in_schema=False)


def local_path(raw: str | None) -> str:
    """Where to go after signing in: only a path on this site (never `//evil.example`)."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/jobs"


@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:
    return page(request, "sign_in.html", None, next=local_path(next), error=None)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(request: Request, context: Context, sessions: Sessions,
            api_key: Annotated[str, Form(max_length=200)] = "",
            next: Annotated[str, Form(max_length=2000)] = "/jobs") -> Response:
    """Check the key against the API's own key table, then start a server-side session for it."""
    # A cross-site form could otherwise sign a visitor in as the attacker (login CSRF).
    if not same_origin(request.headers.get("origin"), request.headers.get("host")):
        return page(request, "sign_in.html", None, 403, next="/jobs", error="Cross-site sign-in refused.")
    key = api_key.strip()
    if not key or tenancy.authenticate(context.db, key) is None:
        return page(request, "sign_in.html", None, 401, next=local_path(next),
                    error="That API key is unknown or revoked.")
    session_id, _session = sessions.create(key)
    response = RedirectResponse(local_path(next), status_code=303)
    response.set_cookie(COOKIE_NAME, session_id, max_age=int(SESSION_TTL_S), path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/sign-out", response_class=RedirectResponse)
def sign_out(viewer: CurrentViewer, sessions: Sessions,
             csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "") -> RedirectResponse:
    if not tokens_match(csrf_token, viewer.csrf_token):  # not our own page's form: change nothing
        return RedirectResponse("/jobs", status_code=303)
    sessions.end(viewer.session_id)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response
