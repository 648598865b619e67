"""Who is looking at the console, and how its pages' JavaScript reaches the API.

Bearer auth on /v1 is untouched. `CookieAuth` only helps a request that has no Authorization
header but does carry a console session cookie: it adds `Authorization: Bearer <the session's key>`
before the API sees the request. A state-changing request authenticated that way must also carry
the session's CSRF token (`X-CSRF-Token`) and, when the browser names one, a same-origin `Origin`;
with the SameSite=Strict cookie that is two independent guards against cross-site requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from tuneyard.api.deps import Context
from tuneyard.api.errors import FORBIDDEN, envelope
from tuneyard.console.sessions import COOKIE_NAME, ConsoleSession, SessionStore, tokens_match
from tuneyard.store import tenancy
from tuneyard.store.tenancy import Principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No live session, or its key was revoked: the page sends the visitor to sign in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when the browser did not name an origin, or named this host."""
    if origin is None:
        return True
    return origin != "null" and host is not None and urlsplit(origin).netloc == host


class CookieAuth:
    """ASGI middleware: console session cookie → bearer key for /v1, with CSRF checks on writes."""

    def __init__(self, app: ASGIApp, store: SessionStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        session = None if "authorization" in headers else self._session(headers.get("cookie"))
        if session is None:  # a bearer caller, or nobody: the API decides as it always does
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and not self._csrf_ok(headers, session):
            response = envelope(403, FORBIDDEN, "cross-site request refused: missing or wrong CSRF token")
            await response(scope, receive, send)
            return
        bearer = (b"authorization", f"Bearer {session.api_key}".encode("latin-1"))
        await self.app({**scope, "headers": [*scope["headers"], bearer]}, receive, send)

    def _session(self, cookie_header: str | None) -> ConsoleSession | None:
        if not cookie_header:
            return None
        return self.store.get(cookie_parser(cookie_header).get(COOKIE_NAME))

    @staticmethod
    def _csrf_ok(headers: dict[str, str], session: ConsoleSession) -> bool:
        return same_origin(headers.get("origin"), headers.get("host")) and tokens_match(
            headers.get(CSRF_HEADER), session.csrf_token)


def session_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.console_sessions
    return store


Sessions = Annotated[SessionStore, Depends(session_store)]


@dataclass(frozen=True)
class Viewer:
    """A signed-in console user: who they are to the API, and the token their forms carry."""

    principal: Principal
    session_id: str
    csrf_token: str


def current_viewer(request: Request, context: Context, sessions: Sessions) -> Viewer:
    session_id = request.cookies.get(COOKIE_NAME)
    session = sessions.get(session_id)
    principal = tenancy.authenticate(context.db, session.api_key) if session is not None else None
    if session is None or principal is None or session_id is None:
        sessions.end(session_id)
        raise SignInRequired(request.url.path)
    return Viewer(principal, session_id, session.csrf_token)


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]
