"""Per-job secrets held in this process's memory only: the one part of the store never written.

A request may carry a secret the job's runner needs (002's `hf_token`, for the hub). Nothing
stored may hold it (tuneyard.services.submission refuses a job that would), so it waits here, under
a random handle the job's labels name (`LABEL`, with the environment variables it fills; names,
never values), until a worker of this process launches the runner with it in its environment.

Being memory, it is lost when the process ends, and a worker of another process has none of it: a
job whose handle is not held fails before its runner starts, saying so (tuneyard.worker.loop), rather
than running without its token. The API processes of `serve --api-processes` hold none themselves:
theirs is a `SecretHolder` that asks the serve process, whose workers launch the runners
(tuneyard.store.secret_channel).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from typing import Protocol

LABEL = "runner_secrets"
"""The job labels' entry naming a job's held secrets: `{"handle", "environment": [variable, ...]}`.
Not a dialect's name, so no dialect shows it."""


class SecretHolder(Protocol):
    """What holds a process's secrets for its workers: `HeldSecrets`, or a channel to the process that does."""

    def hold(self, environment: Mapping[str, str], handle: str | None = None) -> str: ...

    def environment(self, handle: str) -> dict[str, str] | None: ...

    def forget(self, handle: str) -> None: ...


class HeldSecrets:
    """Runner environment variables by handle, thread-safe (API threads hold, worker threads read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, str]] = {}

    def hold(self, environment: Mapping[str, str], handle: str | None = None) -> str:
        """Keep `environment` (variable → value) under `handle`, or a new one; return the handle."""
        handle = handle or secrets.token_hex(16)
        with self._lock:
            self._held[handle] = dict(environment)
        return handle

    def environment(self, handle: str) -> dict[str, str] | None:
        """What `handle` holds, or None when this process does not hold it."""
        with self._lock:
            held = self._held.get(handle)
        return None if held is None else dict(held)

    def forget(self, handle: str) -> None:
        with self._lock:
            self._held.pop(handle, None)

    def __repr__(self) -> str:  # never the values, whatever prints it
        with self._lock:
            return f"HeldSecrets({len(self._held)} held)"
