"""Request body limits, enforced while the body arrives rather than after it was buffered.

Size: a declared Content-Length over the cap is answered at once; a body that grows past it
mid-stream (chunked uploads) raises an HTTPException from `receive`, which FastAPI passes through
untouched to the error handlers, so both cases get status 413 in the words of the path's dialect.

Time: a body whose next piece takes longer than `read_timeout` to arrive, or whose whole takes longer
than `total_timeout`, is answered 408 the same way. Without it a client that declares more than it
sends holds its connection, and a request thread, for ever. Only the body is timed: once it has all
arrived, `receive` waits for a disconnect for as long as a response streams.

Concurrency: each API key may have `max_uploads_per_key` uploads arriving at once; one more is
answered 429 before its body is read. Keys are told apart by their Authorization header (hashed),
before authentication: requests without one share one allowance.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneyard.api.errors import INVALID_REQUEST, RATE_LIMITED, ApiError, ErrorRenderer, render_envelope

JSON_BODY_LIMIT = 1024 * 1024
MULTIPART_SLACK = 1024 * 1024
"""Room for the multipart framing and form fields around an upload of the maximum size."""
CLOSE = {"Connection": "close"}  # the rest of the body is never read: the connection cannot be reused


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body is larger than {limit} bytes")


class BodyTimeout(HTTPException):
    def __init__(self, message: str) -> None:
        super().__init__(status_code=408, detail=message, headers=CLOSE)


class BodyLimit:
    """ASGI middleware: uploads to `upload_paths` (every dialect's) may carry `upload_limit` bytes,
    others less; bodies must keep arriving (`read_timeout` between pieces, `total_timeout` in all);
    `max_uploads_per_key` uploads per key at once (0: no cap). A refusal is rendered by the dialect
    of its path, `renderer_for(path)`."""

    def __init__(self, app: ASGIApp, upload_limit: int, upload_paths: tuple[str, ...] = ("/v1/files",),
                 default_limit: int = JSON_BODY_LIMIT,
                 renderer_for: Callable[[str], ErrorRenderer] | None = None, *,
                 read_timeout: float = 30.0, total_timeout: float = 3600.0, max_uploads_per_key: int = 0) -> None:
        self.app = app
        self.upload_limit = upload_limit + MULTIPART_SLACK
        self.upload_paths = frozenset(upload_paths)
        self.default_limit = default_limit
        self.renderer_for = renderer_for or (lambda _path: render_envelope)
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_uploads_per_key = max_uploads_per_key
        self.uploading: Counter[str] = Counter()  # key -> uploads arriving now (one event loop: no lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"] in self.upload_paths
        limit = self.upload_limit if upload else self.default_limit
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            message = f"the request body is larger than {limit} bytes"
            await self._refuse(scope, receive, send, ApiError(413, INVALID_REQUEST, message,
                                                              {"limit_bytes": limit}, CLOSE))
            return
        timed = self._timed(self._capped(receive, limit))
        if not (upload and scope["method"] == "POST" and self.max_uploads_per_key):
            await self.app(scope, timed, send)
            return
        key = _key_of(scope)
        if self.uploading[key] >= self.max_uploads_per_key:
            await self._refuse(scope, receive, send, self._too_many_uploads())
            return
        self.uploading[key] += 1
        try:
            await self.app(scope, timed, send)
        finally:
            self.uploading[key] -= 1
            if not self.uploading[key]:
                del self.uploading[key]

    def _capped(self, receive: Receive, limit: int) -> Receive:
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return capped

    def _timed(self, receive: Receive) -> Receive:
        deadline = anyio.current_time() + self.total_timeout
        arrived = False

        async def timed() -> Message:
            nonlocal arrived
            if arrived:  # the body is complete: what is awaited now is a disconnect
                return await receive()
            whole_left = deadline - anyio.current_time()
            with anyio.move_on_after(max(0.0, min(self.read_timeout, whole_left))) as waiting:
                message = await receive()
            if waiting.cancelled_caught:
                raise BodyTimeout(self._timeout_message(whole_left))
            arrived = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return timed

    def _timeout_message(self, whole_left: float) -> str:
        if whole_left <= self.read_timeout:
            return f"the request body did not arrive within {self.total_timeout:g} s"
        return f"the request body stopped arriving: nothing for {self.read_timeout:g} s"

    def _too_many_uploads(self) -> ApiError:
        cap = self.max_uploads_per_key
        message = (f"this key already has {cap} uploads arriving, its limit "
                   "(TUNEYARD_MAX_CONCURRENT_UPLOADS_PER_KEY); retry when one has finished")
        return ApiError(429, RATE_LIMITED, message, {"limit": cap, "quota": "max_concurrent_uploads_per_key"},
                        {"Retry-After": "1", **CLOSE})

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
        response = self.renderer_for(scope["path"])(Request(scope, receive), error)
        await response(scope, receive, send)


def _key_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return hashlib.sha256(value).hexdigest()
    return ""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
