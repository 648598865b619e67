"""The web console: server-rendered pages at `/` over the same services as the API, with a little
JavaScript that follows jobs live through the /v1 API using the signed-in session.

`install_console(app)` adds the pages, the static assets and the cookie-to-bearer middleware to an
app made by `tuneyard.api.app.create_app`.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from tuneyard.console import pages_auth, pages_data, pages_jobs, pages_models, pages_trajectories
from tuneyard.console.auth import CookieAuth, SignInRequired
from tuneyard.console.sessions import SessionStore
from tuneyard.console.views import STATIC_DIR, StaticAssets

__all__ = ["install_console"]


async def _to_sign_in(request: Request, exc: Exception) -> RedirectResponse:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(f"/sign-in?next={quote(exc.next_path, safe='/')}", status_code=303)


def install_console(app: FastAPI) -> None:
    store = SessionStore()
    app.state.console_sessions = store
    app.add_exception_handler(SignInRequired, _to_sign_in)
    for module in (pages_auth, pages_jobs, pages_data, pages_models, pages_trajectories):
        app.include_router(module.router)
    app.mount("/static", StaticAssets(directory=STATIC_DIR), name="console-static")
    app.add_middleware(CookieAuth, store=store)
