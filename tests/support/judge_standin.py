"""A local HTTP server playing OpenAI's chat completions protocol, as an evaluation judge.

No judge model can run here, so the stand-in answers every grading request with the grades it
was given, and records each request (body and Authorization header) for the test to check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback_server import serving


@dataclass
class JudgeStandIn:
    reply: str
    """The content of every answer's message (JSON grades, or anything a bad judge might say)."""
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""


@contextmanager
def judge_standin(reply: str, status: int = 200) -> Iterator[JudgeStandIn]:
    state = JudgeStandIn(reply, status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "body": body,
                                   "authorization": self.headers.get("Authorization")})
            answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"),
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": state.reply}}]}
            data = json.dumps(answer).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as port:
        state.base_url = f"http://127.0.0.1:{port}/v1"
        yield state
