"""Per-job secrets held by the serve process for its API processes (`serve --api-processes`).

A submission arrives in an API process, but the workers that hand a job's secrets to its runner live
in the serve process: so the serve process is the one holder (its `HeldSecrets`), and each API
process's `Database.secrets` is a `ChannelSecrets` that asks it. The channel is one end of a
socketpair made for that API process alone, passed to it as an inherited descriptor: the values
never touch a file, an environment, a command line or a log. Each message is a 4-byte big-endian
length, then that many bytes of UTF-8 JSON; the serve process answers every request in order, in a
`SecretsBroker` thread per API process, until that process's end closes.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from collections.abc import Mapping
from typing import Any

from tuneyard.errors import PlatformError
from tuneyard.store.secrets import SecretHolder

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20
"""Far above any job's secrets (a token is tens of bytes): a larger length is a broken stream."""
ANSWER_TIMEOUT_SECONDS = 30.0
"""How long an API process waits for the serve process to answer: it answers at once, unless it is
gone (and then this process ends within a second, tuneyard.child_process.exit_with_parent)."""
_LENGTH = struct.Struct(">I")


class SecretsChannelError(PlatformError):
    """The serve process that holds the jobs' secrets did not answer."""


def send(sock: socket.socket, message: Mapping[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(_LENGTH.pack(len(data)) + data)


def receive(sock: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the other end closed between messages."""
    head = _read_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_MESSAGE_BYTES:
        raise SecretsChannelError(f"a message of {length} bytes on the secrets channel")
    body = _read_exactly(sock, length)
    if body is None:
        raise SecretsChannelError("the secrets channel closed in the middle of a message")
    message = json.loads(body)
    if not isinstance(message, dict):
        raise SecretsChannelError("a message on the secrets channel is not an object")
    return message


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    chunks, left = [], count
    while left:
        chunk = sock.recv(left)
        if not chunk:
            if left == count:
                return None
            raise SecretsChannelError("the secrets channel closed in the middle of a message")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class SecretsBroker:
    """The serve process's side of one API process's channel: answers from `held` until it closes."""

    def __init__(self, held: SecretHolder, sock: socket.socket, name: str) -> None:
        self._held = held
        self._sock = sock
        self._name = name

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._serve, name=f"secrets-{self._name}", daemon=True)
        thread.start()
        return thread

    def _serve(self) -> None:
        try:
            while (request := receive(self._sock)) is not None:
                send(self._sock, self._answer(request))
        except (OSError, ValueError, SecretsChannelError) as exc:
            # The message itself is never logged: it may carry a secret.
            log.warning("%s: the secrets channel broke (%s); closing it", self._name, type(exc).__name__)
        finally:
            self._sock.close()

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op, handle = request.get("op"), request.get("handle")
        if op == "hold":
            environment = request.get("environment")
            if not isinstance(environment, dict):
                raise SecretsChannelError("hold without an environment")
            return {"handle": self._held.hold(environment, handle)}
        if not isinstance(handle, str):
            raise SecretsChannelError(f"{op!r} without a handle")
        if op == "environment":
            return {"environment": self._held.environment(handle)}
        if op == "forget":
            self._held.forget(handle)
            return {}
        raise SecretsChannelError(f"unknown request {op!r} on the secrets channel")


class ChannelSecrets:
    """`HeldSecrets`' three methods, each a request to the serve process (one at a time).

    A channel that fails once (no answer in time, closed) stays failed: a late answer would otherwise
    be read as the next request's. Every call then raises SecretsChannelError, a platform error.
    """

    def __init__(self, sock: socket.socket, timeout: float = ANSWER_TIMEOUT_SECONDS) -> None:
        sock.settimeout(timeout)
        self._sock = sock
        self._lock = threading.Lock()
        self._broken = False

    def hold(self, environment: Mapping[str, str], handle: str | None = None) -> str:
        return str(self._ask({"op": "hold", "environment": dict(environment), "handle": handle})["handle"])

    def environment(self, handle: str) -> dict[str, str] | None:
        held = self._ask({"op": "environment", "handle": handle})["environment"]
        return None if held is None else {str(k): str(v) for k, v in held.items()}

    def forget(self, handle: str) -> None:
        self._ask({"op": "forget", "handle": handle})

    def close(self) -> None:
        with self._lock:
            self._broken = True
            self._sock.close()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._broken:
                raise SecretsChannelError()
            try:
                send(self._sock, request)
                answer = receive(self._sock)
            except (OSError, ValueError, SecretsChannelError) as exc:
                self._broken = True
                raise SecretsChannelError() from exc
            if answer is None:
                self._broken = True
                raise SecretsChannelError()
            return answer

    def __repr__(self) -> str:  # never the values, whatever prints it
        return "ChannelSecrets(held by the serve process)"
