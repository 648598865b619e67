"""A traversal corpus against every route that takes a path: 404 or 400, never a byte from outside, never a 5xx.

The corpus is generated: `..` and `/` in every encoding a server or a filesystem might decode (percent,
double percent, overlong UTF-8, backslashes, Unicode lookalikes), at depths that reach files planted
outside the run folder and the system's /etc/passwd, plus absolute paths, NUL bytes, names and paths
too long for the filesystem, and symlinks planted in the run folder that point out of it. It is sent
twice: in process (httpx, which may tidy a URL) and as raw bytes over a socket to a live server (what
an attacker's client sends, dot segments and all).
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount

import tuneyard
from tests.support import api
from tests.support.api import Tenant, finished_job, live_server
from tuneyard.console.views import STATIC_DIR
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store.engine import Database

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

DOTS = ("..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "%c0%ae%c0%ae", "%uff0e%uff0e", "．．", "‥",
        "...")
SEPARATORS = ("/", "%2f", "%2F", "\\", "%5c", "%252f", "%c0%af", "%e2%88%95", "／")
PASSWD_MARK = "root:x:0:0"


@dataclass(frozen=True)
class Planted:
    """What lies outside the run folder, and the marker that shows it leaked."""

    job_id: str
    other_job: str  # another organization's job, whose run folder holds the mark
    mark: str
    legit: str  # a file inside the run folder, relative to it
    legit_bytes: bytes


@dataclass(frozen=True)
class PathRoute:
    """A route that takes a path: where the raw path goes, a file it does serve, and what must never leak."""

    declared: str  # as its router declares it (or the mount's path)
    prefix: Callable[[Planted], str]
    legit: Callable[[Planted], tuple[str, bytes]]
    never: tuple[bytes, ...] = ()


def _static_file(_planted: Planted) -> tuple[str, bytes]:
    return "console.css", (STATIC_DIR / "console.css").read_bytes()


# Every route with a `{...:path}` parameter and every mount must be listed here; a test holds the
# package to it, so a new one (a dialect's /output/{file}, say) fails until the corpus covers it.
PATH_ROUTES = (
    PathRoute("/artifacts/{path:path}", lambda p: f"/v1/jobs/{p.job_id}/artifacts/",
              lambda p: (p.legit, p.legit_bytes)),
    PathRoute("/static", lambda _p: "/static/", _static_file, never=(b"def install_console",)),
)


def declared_path_routes(app: FastAPI) -> set[str]:
    """Route paths with a path parameter, as the package's source declares them, and the app's mounts."""
    found = set()
    for source in Path(tuneyard.__file__).parent.rglob("*.py"):
        found |= set(re.findall(r"""["']([^"'\s]*\{\w+:path\}[^"'\s]*)["']""", source.read_text()))
    return found | {route.path for route in app.routes if isinstance(route, Mount)}


def corpus(other_job: str) -> list[str]:
    """Raw (as sent on the wire) paths that each aim outside the run folder, or are no name at all."""
    variants: list[str] = []
    for dots in DOTS:
        for sep in SEPARATORS:
            up = lambda depth, d=dots, s=sep: s.join([d] * depth) + s  # noqa: E731
            variants += [f"{up(1)}secret.txt", f"{up(2)}secret.txt", f"{up(1)}{other_job}{sep}runner.log",
                         f"{up(9)}etc{sep}passwd"]
    variants += [
        "/etc/passwd", "//etc/passwd", "%2fetc%2fpasswd", "%252fetc%252fpasswd", "\\etc\\passwd", "%5cetc%5cpasswd",
        "file:///etc/passwd", "C:\\Windows\\win.ini", "C:%5cWindows%5cwin.ini", "~/secret.txt", "~root/.bashrc",
        "final/../../secret.txt", "final/../../../secret.txt", "final/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "final/....//....//....//secret.txt", "..;/..;/secret.txt", ".../.../secret.txt", "..%00/secret.txt",
        "%00", "%00../../secret.txt", "final/adapter_config.json%00", "final/adapter_config.json%00.txt",
        "final%00/adapter_config.json", "%ff", "%c0%80", "%ed%a0%80", "%fe%ff", "%", "%zz", "%2", "..%2",
        "%0d%0aSet-Cookie:x=1", "%1b[31m", "%7f", "%e2%80%ae", "%ef%bb%bf", "%e2%80%8b..%2fsecret.txt",
        "a" * 255, "a" * 256, "a" * 300, "a" * 5000, "final/" + "a" * 300, "a" * 300 + "/x",
        "/".join(["b" * 255] * 20), "x/" * 2100, "%61" * 300, "final/adapter_config.json/" + "c" * 256,
        "leak", "final/leak", "rel_leak", "dirlink/secret.txt", "passwd_link", "loop", "loop/x", "dirlink",
        "final/dirlink/secret.txt", "dirlink/runs/" + other_job + "/runner.log",
        ".", "..", "./", "final", "final/", "checkpoints", "%2e", "%2e%2e", "...", ".hidden",
    ]
    return variants


def plant(settings: Settings, job_id: str, other_job: str) -> Planted:
    """Secrets outside the run folder, and symlinks in it that point at them."""
    mark = f"TRAVERSAL-SECRET-{uuid.uuid4().hex}"
    data, runs, folder = settings.data_dir, run_dir(settings, job_id).parent, run_dir(settings, job_id)
    for place in (data, runs):
        (place / "secret.txt").write_text(mark)
    (run_dir(settings, other_job) / "runner.log").write_text(mark)
    os.symlink(data / "secret.txt", folder / "leak")
    os.symlink(data / "secret.txt", folder / "final" / "leak")
    os.symlink("../../secret.txt", folder / "rel_leak")
    os.symlink(data, folder / "dirlink")
    os.symlink(data, folder / "final" / "dirlink")
    os.symlink("/etc/passwd", folder / "passwd_link")
    os.symlink(folder / "loop", folder / "loop")
    legit = "final/adapter_config.json"
    return Planted(job_id, other_job, mark, legit, (folder / legit).read_bytes())


@pytest.fixture
def planted(client: TestClient, db: Database, api_settings: Settings, tenant: Tenant, other: Tenant) -> Planted:
    mine = finished_job(client, db, api_settings, tenant)
    theirs = finished_job(client, db, api_settings, other)
    return plant(api_settings, mine["job_id"], theirs["job_id"])


def judge(label: str, status: int, body: bytes, planted: Planted, route: PathRoute) -> str | None:
    """Why this answer is wrong, or None."""
    if status >= 500:
        return f"{label}: {status} {body[:200]!r}"
    if any(mark in body for mark in (planted.mark.encode(), PASSWD_MARK.encode(), *route.never)):
        return f"{label}: ESCAPE {status} {body[:200]!r}"
    if status not in (400, 404):
        return f"{label}: {status} (expected 404 or 400) {body[:200]!r}"
    return None


def test_the_corpus_covers_every_route_that_takes_a_path(app: FastAPI) -> None:
    assert declared_path_routes(app) == {route.declared for route in PATH_ROUTES}


def test_traversal_corpus_in_process(client: TestClient, tenant: Tenant, planted: Planted) -> None:
    variants = corpus(planted.other_job)
    assert len(variants) >= 300
    failures, statuses = [], Counter[int]()
    for route in PATH_ROUTES:
        prefix, (legit, legit_bytes) = route.prefix(planted), route.legit(planted)
        ok = client.get(prefix + legit, headers=tenant.headers)
        assert ok.status_code == 200 and ok.content == legit_bytes  # the route does serve files
        for raw in variants:
            response = client.get(prefix + raw, headers=tenant.headers)
            statuses[response.status_code] += 1
            # httpx tidies some URLs ('.', '..') into another route's: those answer as that route does.
            reached = response.request.url.raw_path.startswith(prefix.encode())
            status = response.status_code if reached or response.status_code >= 500 else 404
            failures.append(judge(f"{route.declared} {raw[:80]}", status, response.content, planted, route))
    assert not [f for f in failures if f], "\n".join(f for f in failures if f)
    assert set(statuses) <= {200, 400, 404}, statuses


def test_traversal_corpus_as_raw_bytes_to_a_live_server(app: FastAPI, tenant: Tenant, planted: Planted) -> None:
    variants = corpus(planted.other_job)
    failures, statuses = [], Counter[int]()
    with live_server(app) as base:
        address = urlsplit(base)
        host, port = address.hostname or "", address.port or 0
        for route in PATH_ROUTES:
            prefix, (legit, legit_bytes) = route.prefix(planted), route.legit(planted)
            assert raw_get(host, port, prefix + legit, tenant) == (200, legit_bytes)
            for raw in variants:
                status, body = raw_get(host, port, prefix + raw, tenant)
                statuses[status] += 1
                failures.append(judge(f"{route.declared} {raw[:80]}", status, body, planted, route))
    assert not [f for f in failures if f], "\n".join(f for f in failures if f)
    assert set(statuses) <= {400, 404}, statuses


def raw_get(host: str, port: int, target: str, tenant: Tenant) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte as given (UTF-8), no client tidying it."""
    request = (f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {tenant.key}\r\n"
               "Connection: close\r\n\r\n").encode("utf-8", "surrogateescape")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
