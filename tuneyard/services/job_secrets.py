"""A job's secrets from its request to its runner's environment, stored nowhere on the way.

The submission holds them in this process's memory (`Database.secrets`, tuneyard.store.secrets)
before the job row exists, so no worker can claim the job before they are there, and names their
handle in the job's labels. The worker that launches the runner asks for them by that handle: held,
they join the runner's environment for this job only; not held (this process restarted since, or the
worker runs in another process), the job fails saying which secret is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneyard.errors import PlatformError
from tuneyard.store.engine import Database
from tuneyard.store.secrets import LABEL
from tuneyard.store.tables import Job

RUNNER_ENVIRONMENT: dict[str, str] = {
    "hf_token": "HF_TOKEN",  # huggingface_hub reads it for every download the runner makes from the hub
}
"""Each secret field a dialect may take → the runner's environment variable that carries it."""


def hold(db: Database, secrets: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Hold the request's secrets (by field name) and return the labels entry naming them ({} for none)."""
    given = {name: value for name, value in secrets.items() if value}
    if not given:
        return {}
    unknown = sorted(set(given) - set(RUNNER_ENVIRONMENT))
    if unknown:  # a dialect's bug: a secret with nowhere to go would be silently dropped
        raise PlatformError(f"no runner variable for the secret {', '.join(unknown)}", fields=unknown)
    environment = {RUNNER_ENVIRONMENT[name]: value for name, value in given.items()}
    handle = db.secrets.hold(environment)
    return {LABEL: {"handle": handle, "environment": sorted(environment), "fields": sorted(given)}}


def settle(db: Database, held: Mapping[str, dict[str, Any]], job: Job | None) -> None:
    """After the insert: drop what was held for no job (refused), or for a request that returned an
    earlier job (the same idempotency key), whose own handle then gets the secrets again (this process
    may have lost them since that job was made)."""
    if not held:
        return
    handle = held[LABEL]["handle"]
    if job is not None and _entry(job.labels).get("handle") == handle:
        return
    environment = db.secrets.environment(handle)
    db.secrets.forget(handle)
    earlier = _entry(job.labels).get("handle") if job is not None else None
    if earlier and environment is not None:
        db.secrets.hold(environment, earlier)


def runner_environment(db: Database, labels: Mapping[str, Any] | None) -> tuple[dict[str, str], list[str]]:
    """(the job's secrets as runner variables, the secret fields this process no longer holds)."""
    entry = _entry(labels)
    if not entry:
        return {}, []
    environment = db.secrets.environment(str(entry.get("handle")))
    if environment is None:
        return {}, list(entry.get("fields") or entry.get("environment") or [])
    return environment, []


def forget(db: Database, labels: Mapping[str, Any] | None) -> None:
    """Let go of a job's secrets once it will never run again."""
    handle = _entry(labels).get("handle")
    if handle:
        db.secrets.forget(str(handle))


def _entry(labels: Mapping[str, Any] | None) -> dict[str, Any]:
    entry = (labels or {}).get(LABEL)
    return entry if isinstance(entry, dict) else {}
