"""A small HTTP server on loopback that plays Ollama's documented model-import endpoints.

HEAD /api/blobs/sha256:<d> answers 200 for a blob it holds, 404 otherwise; POST there stores the
body only when its sha256 is <d> (400 otherwise, as Ollama does); POST /api/create accepts a model
whose `files` name blobs it holds. Every connection and request is recorded, so a test can say
that none was made. `redirect_to` makes every answer a 307 to that URL instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback_server import serving


@dataclass
class OllamaStandIn:
    port: int = 0
    blobs: dict[str, bytes] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    connections: int = 0
    redirect_to: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(state: OllamaStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            state.connections += 1
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # quiet in test output
            pass

        def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            if self.redirect():
                return
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def redirect(self) -> bool:
            if state.redirect_to is None:
                return False
            self.send_header("Location", state.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_HEAD(self) -> None:
            state.requests.append(("HEAD", self.path))
            if state.redirect_to:
                self._answer(307)
                return
            digest = self.path.removeprefix("/api/blobs/")
            self._answer(200 if digest in state.blobs else 404)

        def do_POST(self) -> None:
            state.requests.append(("POST", self.path))
            body = self._body()
            if state.redirect_to:
                self._answer(307)
            elif self.path.startswith("/api/blobs/sha256:"):
                digest = self.path.removeprefix("/api/blobs/")
                if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
                    self._answer(400, {"error": "digest mismatch"})
                    return
                state.blobs[digest] = body
                self._answer(201)
            elif self.path == "/api/create":
                request = json.loads(body)
                missing = [d for d in (request.get("files") or {}).values() if d not in state.blobs]
                if missing or not request.get("model"):
                    self._answer(400, {"error": f"unknown blobs {missing}"})
                    return
                state.created.append(request)
                self._answer(200, {"status": "success"})
            else:
                self._answer(404, {"error": "not found"})

    return Handler


@contextmanager
def ollama_standin() -> Iterator[OllamaStandIn]:
    state = OllamaStandIn()
    with serving(_handler(state)) as port:
        state.port = port
        yield state
