"""Request body caps, enforced while the body arrives rather than after it was buffered.

A declared Content-Length over the cap is answered at once; a body that grows past it mid-stream
(chunked uploads) raises an HTTPException from `receive`, which FastAPI passes through untouched to
the error handlers, so both cases get status 413 in the words of the path's dialect.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneyard.api.errors import INVALID_REQUEST, ApiError, ErrorRenderer, render_envelope

JSON_BODY_LIMIT = 1024 * 1024
MULTIPART_SLACK = 1024 * 1024
"""Room for the multipart framing and form fields around an upload of the maximum size."""


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body is larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware: uploads to `upload_paths` (every dialect's) may carry `upload_limit` bytes,
    others less; a refusal is rendered by the dialect of its path, `renderer_for(path)`."""

    def __init__(self, app: ASGIApp, upload_limit: int, upload_paths: tuple[str, ...] = ("/v1/files",),
                 default_limit: int = JSON_BODY_LIMIT,
                 renderer_for: Callable[[str], ErrorRenderer] | None = None) -> None:
        self.app = app
        self.upload_limit = upload_limit + MULTIPART_SLACK
        self.upload_paths = frozenset(upload_paths)
        self.default_limit = default_limit
        self.renderer_for = renderer_for or (lambda _path: render_envelope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in self.upload_paths else self.default_limit
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        message = f"the request body is larger than {limit} bytes"
        error = ApiError(413, INVALID_REQUEST, message, {"limit_bytes": limit}, {"Connection": "close"})
        response = self.renderer_for(scope["path"])(Request(scope, receive), error)
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

