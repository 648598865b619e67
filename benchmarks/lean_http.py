"""A keep-alive HTTP/1.1 GET client on bare asyncio streams, for load generators.

A load generator shares the two cores with the server it measures. httpx spends about 1.2 ms of
CPU on each request here, as much as the server's own handling: the latencies it reports then
include its own queueing. This client does one thing (GET, read a Content-Length body) for a
small fraction of that. Not for anything but benchmarks: no TLS, no redirects, no chunked bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlencode, urlsplit


class ResponseError(Exception):
    """The server answered something this client does not read (or closed mid-answer)."""


class Connection:
    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http://host:port only, not {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        lines = [f"Host: {parts.netloc}", "Connection: keep-alive", *(f"{k}: {v}" for k, v in headers.items())]
        self._headers = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

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

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, int, bool, str | None]:
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
    closing, etag = fields.get("connection", "").lower() == "close", fields.get("etag")
    if status == 304:  # never a body (RFC 9110 15.4.5), so no Content-Length either
        return status, 0, closing, etag
    if "content-length" not in fields:
        encoding = fields.get("transfer-encoding")
        raise ResponseError(f"HTTP {status} without Content-Length (transfer-encoding {encoding})")
    return status, int(fields["content-length"]), closing, etag
