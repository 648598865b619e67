"""The serving process: `python -m tuneyard.serving --threads N --idle-seconds S [--nice K]`.

An HTTP server on 127.0.0.1 at a port of its choosing, which it prints on its first stdout line
(`listening PORT`). Every request carries the token its supervisor wrote on its stdin, so no other
local process can drive it. It holds the loaded models by key, loads a model on the first request
that names it (so a restarted process, or one that unloaded an idle model, serves again without
being told), runs one generation at a time per model, and unloads a model idle for S seconds.

POST /generate {model, prompt: {messages | text}, sampling} → 200 and NDJSON lines, each
`{"text": ...}`, the last `{"finish": {reason, prompt_tokens, completion_tokens}}`; a line of
`{"error": ...}` ends a stream that failed after it began. Refusals before the stream begins answer
`{"error": {message, user, field}}` with 422 (the request's fault) or 500. POST /load {model},
POST /unload {key}, GET /status. It exits when its parent does (the API process that supervises it).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tuneyard.serving.backends import (
    BACKENDS,
    Backend,
    BackendError,
    Chunk,
    Finish,
    ModelToLoad,
    Prompt,
    Sampling,
)

TOKEN_HEADER = "X-Serving-Token"
PARENT_CHECK_SECONDS = 1.0
MAX_BODY_BYTES = 8 * 1024 * 1024
"""The API bounds what it forwards; this stops anything larger reaching memory at all."""


@dataclass
class Loaded:
    model: ModelToLoad
    backend: Backend
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)


class Models:
    """The loaded models by key; loading is serialized (two loads at once would double the memory)."""

    def __init__(self, threads: int, idle_seconds: float) -> None:
        self.threads = threads
        self.idle_seconds = idle_seconds
        self._loaded: dict[str, Loaded] = {}
        self._guard = threading.Lock()

    def get(self, model: ModelToLoad) -> Loaded:
        with self._guard:
            held = self._loaded.get(model.key)
            if held is not None and held.model == model:
                held.last_used = time.monotonic()
                return held
            if held is not None:  # activated again with another backend or export: replace it
                self._drop(model.key)
            reason = BACKENDS.unavailable_reason(model.backend)
            if reason:
                raise BackendError(reason, user=True, field="backend")
            backend = BACKENDS.get(model.backend).factory()
            backend.load(model, self.threads)
            self._loaded[model.key] = Loaded(model, backend)
            return self._loaded[model.key]

    def unload(self, key: str) -> bool:
        with self._guard:
            return self._drop(key)

    def _drop(self, key: str) -> bool:
        held = self._loaded.pop(key, None)
        if held is None:
            return False
        with held.lock:  # let a generation in progress finish first
            held.backend.unload()
        return True

    def unload_idle(self) -> list[str]:
        now = time.monotonic()
        with self._guard:
            idle = [k for k, held in self._loaded.items()
                    if now - held.last_used > self.idle_seconds and not held.lock.locked()]
            for key in idle:
                self._drop(key)
        return idle

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._guard:
            return [{"key": k, "backend": h.model.backend, "busy": h.lock.locked(),
                     "idle_seconds": round(now - h.last_used, 1)} for k, h in self._loaded.items()]


class Handler(BaseHTTPRequestHandler):
    server: ServingServer
    protocol_version = "HTTP/1.0"  # one request per connection; a stream ends when the connection closes

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("serving: " + format % args + "\n")

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path == "/status":
            self._json(200, {"pid": os.getpid(), "models": self.server.models.status()})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "user": True}})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        try:
            body = self._body()
            if self.path == "/generate":
                self._generate(body)
            elif self.path == "/load":
                self.server.models.get(ModelToLoad.from_dict(body["model"]))
                self._json(200, {"loaded": body["model"]["key"]})
            elif self.path == "/unload":
                self._json(200, {"unloaded": self.server.models.unload(str(body["key"]))})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}", "user": True}})
        except BackendError as exc:
            self._json(422 if exc.user else 500, {"error": {"message": str(exc), "user": exc.user,
                                                            "field": exc.field}})
        except (KeyError, TypeError, ValueError) as exc:
            self._json(400, {"error": {"message": f"malformed request: {exc!r}", "user": False}})

    def _generate(self, body: dict[str, Any]) -> None:
        held = self.server.models.get(ModelToLoad.from_dict(body["model"]))
        prompt = Prompt(messages=body["prompt"].get("messages"), text=body["prompt"].get("text"))
        sampling = Sampling.from_dict(body["sampling"])
        with held.lock:
            events = held.backend.generate(prompt, sampling)
            first = next(events)  # a refusal (a prompt past the context) is raised here, before any byte
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            try:
                for event in _chain(first, events):
                    self._line(_event(event))
            except BackendError as exc:
                self._line({"error": {"message": str(exc), "user": exc.user, "field": exc.field}})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away: stop generating for it
            held.last_used = time.monotonic()

    def _line(self, data: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(data).encode() + b"\n")
        self.wfile.flush()

    def _authorized(self) -> bool:
        given = self.headers.get(TOKEN_HEADER, "")
        if hmac.compare_digest(given.encode(), self.server.token.encode()):
            return True
        self._json(401, {"error": {"message": "unknown caller", "user": False}})
        return False

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"body of {length} bytes")
        data = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the body is not a JSON object")
        return data

    def _json(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def _event(event: Chunk | Finish) -> dict[str, Any]:
    if isinstance(event, Chunk):
        return {"text": event.text}
    return {"finish": {"reason": event.reason, "prompt_tokens": event.prompt_tokens,
                       "completion_tokens": event.completion_tokens}}


class ServingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str, models: Models) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.token = token
        self.models = models


def _watch(server: ServingServer, parent: int, idle_every: float) -> None:
    """Stop within a second of the supervising process's end (we are re-parented: an API killed
    with SIGKILL never stops us), and unload idle models every `idle_every` seconds."""
    next_idle_check = time.monotonic() + idle_every
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)
        if time.monotonic() >= next_idle_check:
            next_idle_check = time.monotonic() + idle_every
            for key in server.models.unload_idle():
                sys.stderr.write(f"serving: unloaded {key}, idle for over {server.models.idle_seconds:.0f} s\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneyard.serving")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads each model computes with")
    parser.add_argument("--idle-seconds", type=float, default=900.0, help="unload a model unused this long")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N first")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    parent = os.getppid()
    token = sys.stdin.readline().strip()
    if not token:
        sys.exit("the supervisor writes a token on stdin")
    server = ServingServer(token, Models(args.threads, args.idle_seconds))
    print(f"listening {server.server_address[1]}", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nothing more for the supervisor's pipe
    watch_every = max(0.2, min(30.0, args.idle_seconds / 4))
    threading.Thread(target=_watch, args=(server, parent, watch_every), daemon=True).start()
    server.serve_forever()
    return 0
