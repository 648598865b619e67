"""The HTTP server around the app: uvicorn, with a deadline on every request's head.

uvicorn times out an idle kept-alive connection, but not one that is opened and then says nothing,
or sends its request line and headers a byte at a time: each such connection is held for as long
as its client likes, and a few hundred of them exhaust the server's file descriptors (slowloris).
The app's own body timeouts (`api/limits.py`) cannot help: ASGI sees a request only once its head
is complete. So the protocol here gives each request's head `head_timeout` seconds, counted from
the connection's opening (the first request) or the first byte of the request (later ones on a
kept-alive connection), and answers 408 and closes the connection when it runs out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tuneyard.settings import Settings

GRACEFUL_SHUTDOWN_SECONDS = 5.0
"""How long requests still open at SIGTERM may go on before uvicorn cancels them: an open SSE stream
never ends by itself, and without a bound it held `tuneyard serve` (and its drain of the running
jobs) for as long as its client stayed."""
REQUEST_TIMEOUT_HEAD = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is late."""

    head_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # a later request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_late)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT_HEAD)
            self.transport.close()


def head_deadline_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class with `seconds` for each request's head (uvicorn builds one per connection)."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout": seconds})


def server_config(app: FastAPI, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's config for `app`: the settings' address, the head deadline, a bounded shutdown, quiet logs."""
    options.setdefault("log_level", "warning")
    options.setdefault("timeout_graceful_shutdown", GRACEFUL_SHUTDOWN_SECONDS)
    return uvicorn.Config(app, host=settings.host, port=settings.port,
                          http=head_deadline_protocol(settings.head_read_timeout_seconds), **options)
