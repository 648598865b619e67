"""Request heads and bodies that stop arriving, and too many uploads at once from one key (issue 17, F8), over real
sockets against a live server: the request ends with 408 within the configured timeout, and the
upload past a key's allowance with 429 before its body is read."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from tests.support import api
from tests.support.api import UPLOAD_LIMIT, Tenant, live_server
from tuneyard.settings import Settings

app, tenant, other = api.app, api.tenant, api.other

READ_TIMEOUT = 1.0
HEAD_TIMEOUT = 1.5
TOTAL_TIMEOUT = 3.0
UPLOADS_PER_KEY = 2
SLACK = 2.0  # scheduling on two shared cores, and the response's way back
BOUNDARY = "tuneyard-test-boundary"


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.with_overrides(max_upload_bytes=UPLOAD_LIMIT, body_read_timeout_seconds=READ_TIMEOUT,
                                   head_read_timeout_seconds=HEAD_TIMEOUT,
                                   body_total_timeout_seconds=TOTAL_TIMEOUT,
                                   max_concurrent_uploads_per_key=UPLOADS_PER_KEY)


@pytest.fixture
def server(app: FastAPI) -> Iterator[str]:
    with live_server(app) as base:
        yield base


def _start(base: str, path: str, key: str, declared: int, sent: bytes, content_type: str) -> socket.socket:
    """A request whose head promises `declared` bytes of body, of which only `sent` are sent."""
    where = urlsplit(base)
    conn = socket.create_connection((where.hostname, where.port), timeout=TOTAL_TIMEOUT + 10)
    head = (f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n")
    conn.sendall(head.encode() + sent)
    return conn


def _multipart_start(base: str, key: str, declared: int = 10_000) -> socket.socket:
    part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + b'{"text": "a"}\n' * 4
    return _start(base, "/v1/files", key, declared, part, f"multipart/form-data; boundary={BOUNDARY}")


def _answer(conn: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and JSON body of the response, read until the server closes the connection."""
    data = b""
    with conn:
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize("kind", ["upload", "json"])
def test_a_body_that_stops_arriving_is_408_within_the_read_timeout(
    server: str, tenant: Tenant, api_settings: Settings, kind: str,
) -> None:
    if kind == "upload":
        conn = _multipart_start(server, tenant.key)
    else:
        conn = _start(server, "/v1/jobs", tenant.key, 5_000, b'{"base_model": "tiny-', "application/json")
    sent = time.monotonic()
    status, headers, body = _answer(conn)
    waited = time.monotonic() - sent
    assert status == 408
    assert READ_TIMEOUT * 0.9 <= waited < READ_TIMEOUT + SLACK
    assert headers["connection"] == "close"
    assert body["error"]["code"] == "INVALID_REQUEST"
    assert body["error"]["message"] == f"the request body stopped arriving: nothing for {READ_TIMEOUT:g} s"
    files = api_settings.data_dir / "files"
    assert not files.exists() or not any(files.iterdir())  # nothing kept of a body cut short


def test_a_body_that_trickles_in_is_408_at_the_total_timeout(server: str, tenant: Tenant) -> None:
    conn = _multipart_start(server, tenant.key, declared=100_000)
    started = time.monotonic()
    try:
        while time.monotonic() - started < TOTAL_TIMEOUT + SLACK:
            conn.sendall(b"x" * 10)  # a piece well within every read timeout
            time.sleep(READ_TIMEOUT / 4)
    except OSError:  # the server answered and closed while we were still sending
        pass
    status, _headers, body = _answer(conn)
    assert status == 408
    assert body["error"]["message"] == f"the request body did not arrive within {TOTAL_TIMEOUT:g} s"


def test_uploads_past_a_keys_allowance_are_429_and_other_keys_are_untouched(
    server: str, tenant: Tenant, other: Tenant,
) -> None:
    held = [_multipart_start(server, tenant.key) for _ in range(UPLOADS_PER_KEY)]
    time.sleep(0.3)  # both are inside the app, waiting for the rest of their bodies
    started = time.monotonic()
    status, headers, body = _answer(_multipart_start(server, tenant.key))
    assert status == 429 and time.monotonic() - started < READ_TIMEOUT  # refused before any body wait
    assert body["error"]["code"] == "RATE_LIMITED"
    assert body["error"]["details"] == {"limit": UPLOADS_PER_KEY, "quota": "max_concurrent_uploads_per_key"}
    assert "TUNEYARD_MAX_CONCURRENT_UPLOADS_PER_KEY" in body["error"]["message"]
    assert headers["retry-after"] == "1"

    files = {"file": ("b.jsonl", b'{"text": "b"}\n')}
    assert httpx.post(f"{server}/v1/files", headers=other.headers, files=files).status_code == 201
    assert [_answer(conn)[0] for conn in held] == [408] * UPLOADS_PER_KEY
    assert httpx.post(f"{server}/v1/files", headers=tenant.headers, files=files).status_code == 201


def _closed_with(conn: socket.socket) -> bytes:
    """Everything the server sent until it closed the connection."""
    data = b""
    with conn:
        while chunk := conn.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("kind", ["silent", "trickling", "kept-alive"])
def test_a_request_head_that_stops_arriving_is_408_and_closed_within_the_head_timeout(
    server: str, tenant: Tenant, kind: str,
) -> None:
    """A slowloris client: a connection that says nothing, or sends its head a byte at a time, or a
    second request on a kept-alive connection that stops halfway, is answered and closed."""
    where = urlsplit(server)
    conn = socket.create_connection((where.hostname, where.port), timeout=HEAD_TIMEOUT + 10)
    if kind == "kept-alive":
        conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {where.netloc}\r\n\r\n".encode())
        first = conn.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        time.sleep(HEAD_TIMEOUT)  # idle between requests is the keep-alive timeout's business
    started = time.monotonic()
    if kind == "trickling":
        head = f"GET /v1/jobs HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer {tenant.key}\r\n"
        try:
            for byte in head.encode():
                conn.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:  # closed while we were still sending
            pass
    elif kind == "kept-alive":
        conn.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: ")
    answer = _closed_with(conn)
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"Connection: close" in answer
    assert HEAD_TIMEOUT * 0.9 <= waited < HEAD_TIMEOUT + SLACK
