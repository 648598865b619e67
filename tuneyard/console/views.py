"""Rendering: the console's templates with what every page needs (the viewer, the CSRF token)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import Response
from starlette.types import Scope

from tuneyard.console.auth import Viewer

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

# The console runs only its own files: scripts and styles from /static (no inline code, so no
# 'unsafe-inline'), requests to its own origin, and no framing by anyone (clickjacking).
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "font-src 'self'",
    "connect-src 'self'", "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    # Job ids in the console's URLs never leave this site. Not no-referrer: under it a browser sends
    # `Origin: null` with the sign-in form, which the sign-in's login-CSRF check must then refuse.
    "Referrer-Policy": "same-origin",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "—"


def _size(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _count(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return str(value)


templates.env.filters["when"] = _when
templates.env.filters["size"] = _size
templates.env.filters["count"] = _count


def page(request: Request, name: str, viewer: Viewer | None, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    csrf = viewer.csrf_token if viewer is not None else ""
    response = templates.TemplateResponse(request, name, {"viewer": viewer, "csrf_token": csrf, **context},
                                          status_code=status_code)
    # Pages show one organization's data: never cache them where another visitor could see them.
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


class StaticAssets(StaticFiles):
    """The console's scripts and styles, sent with the pages' security headers (nosniff above all:
    a browser must not run a file as script unless it is served as one)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response
