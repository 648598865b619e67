"""A keep-alive HTTP/1.1 GET client on bare asyncio streams, for load generators.

A load generator shares the two cores with the server it measures. httpx spends about 1.2 ms of
CPU on each request here, as much as the server's own handling: the latencies it reports then
include its own queueing. This client does one thing (GET, read a Content-Length body) for a
small fraction of that, and `EventStream` reads a job's SSE stream (a chunked body) as lightly.
Not for anything but benchmarks: no TLS, no redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlencode, urlsplit

from tuneyard.client_sse import StreamItem, parse_sse


class ResponseError(Exception):
    """The server answered something this client does not read (or closed mid-answer)."""


class _Link:
    """One connection to the server (opened by the subclass), with the headers each request ends with."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http://host:port only, not {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        lines = [f"Host: {parts.netloc}", "Connection: keep-alive", *(f"{k}: {v}" for k, v in headers.items())]
        self._headers = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Connection(_Link):
    """Keep-alive GETs, one at a time; a failed one closes it and the next opens it again."""

    async def get(self, path: str, params: dict[str, object] | None = None,
                  if_none_match: str | None = None) -> tuple[int, bytes, str | None]:
        """(status, body, ETag). Any failure closes the connection; the next call opens a new one."""
        target = f"{path}?{urlencode(params)}" if params else path
        condition = f"If-None-Match: {if_none_match}\r\n".encode() if if_none_match else b""
        try:
            if self._streams is None:
                self._streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._streams
            writer.write(f"GET {target} HTTP/1.1\r\n".encode() + condition + self._headers)
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, closing, etag = _parse_head(head)
            body = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ResponseError):
            await self.close()
            raise
        if closing:
            await self.close()
        return status, body, etag


class EventStream(_Link):
    """One GET answered with SSE, read as it comes: `open` returns once the response's head is in,
    `items` yields each item until the server ends the body. The body is chunked (uvicorn's for a
    streaming response) and each item ends in an empty line written as two LFs (FastAPI's
    `format_sse_event`, what this server sends)."""

    async def open(self, path: str, last_event_id: str | None = None) -> None:
        """ResponseError unless the answer is a 200 of text/event-stream (naming the status and body)."""
        resume = f"Last-Event-ID: {last_event_id}\r\n".encode() if last_event_id else b""
        self._streams = reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(f"GET {path} HTTP/1.1\r\nAccept: text/event-stream\r\n".encode() + resume + self._headers)
        status, fields = _head_fields(await reader.readuntil(b"\r\n\r\n"))
        if status != 200 or not fields.get("content-type", "").startswith("text/event-stream"):
            length = int(fields.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            raise ResponseError(f"HTTP {status} {fields.get('content-type')}: {body[:200]!r}")
        if fields.get("transfer-encoding", "").lower() != "chunked":
            raise ResponseError(f"an SSE body that is not chunked ({fields.get('transfer-encoding')})")

    async def items(self) -> AsyncIterator[StreamItem]:
        """Each item as its last byte arrives; keep-alive comments are read and skipped."""
        assert self._streams is not None, "open() first"
        reader = self._streams[0]
        pending = b""
        while size := _chunk_size(await reader.readuntil(b"\r\n")):
            pending += (await reader.readexactly(size + 2))[:-2]  # each chunk ends in CRLF
            *blocks, pending = pending.split(b"\n\n")
            for block in blocks:
                for item in parse_sse(iter([*block.decode().split("\n"), ""])):
                    yield item


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";")[0], 16)  # a chunk extension after ';' says nothing we need
    except ValueError:
        raise ResponseError(f"not a chunk size: {line[:40]!r}") from None


def _head_fields(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the header fields (names lower-cased) of a response's head."""
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise ResponseError(f"not an HTTP status line: {lines[0][:80]!r}") from None
    fields = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return status, fields


def _parse_head(head: bytes) -> tuple[int, int, bool, str | None]:
    status, fields = _head_fields(head)
    closing, etag = fields.get("connection", "").lower() == "close", fields.get("etag")
    if status == 304:  # never a body (RFC 9110 15.4.5), so no Content-Length either
        return status, 0, closing, etag
    if "content-length" not in fields:
        encoding = fields.get("transfer-encoding")
        raise ResponseError(f"HTTP {status} without Content-Length (transfer-encoding {encoding})")
    return status, int(fields["content-length"]), closing, etag
