"""Console sign-in sessions: an opaque random id in an httpOnly cookie, everything else on the server.

The cookie carries no key and no claims, only 256 random bits naming a server-side session; the key
stays in this process's memory so the console can call the API as its owner. Each request still
presents that key to the API, so revoking a key ends its console sessions at once. Sessions live in
memory: `tuneyard serve` runs one API process, and a restart asks people to sign in again (their
jobs and history are in the database, not here).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

COOKIE_NAME = "tuneyard_session"
SESSION_TTL_S = 12 * 3600.0
"""Idle sessions end after this long; each use extends them."""
MAX_SESSIONS = 10_000
"""Oldest sessions are dropped beyond this, so sign-in floods cannot grow memory without bound."""


@dataclass
class ConsoleSession:
    api_key: str
    csrf_token: str
    expires_at: float


class SessionStore:
    """Opaque session ids → the key they act with and the CSRF token their pages carry."""

    def __init__(self, ttl_s: float = SESSION_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def create(self, api_key: str) -> tuple[str, ConsoleSession]:
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(api_key, secrets.token_urlsafe(32), time.monotonic() + self._ttl_s)
        with self._lock:
            self._sessions[session_id] = session
            while len(self._sessions) > MAX_SESSIONS:  # dicts keep insertion order: drop the oldest
                self._sessions.pop(next(iter(self._sessions)))
        return session_id, session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expires_at < now:
                del self._sessions[session_id]
                return None
            session.expires_at = now + self._ttl_s
            return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)


def tokens_match(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())
