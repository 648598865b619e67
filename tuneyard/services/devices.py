"""The devices this server trains on now: for a request that names one (003's `backend`), and for
why a queued job that requires one waits.

A live worker (heartbeat within the lease window, not stopped) declares its device when it registers;
a worker that declared none trains on this host's. With no worker registered yet, the answer is the
device a worker started here would declare, so a fresh laptop server still says what it can do.
A job requiring a device is claimed only by a worker of it (`lifecycle.claim`); when the last such
worker leaves, the job stays queued and its `waiting_reason` says which device it waits for.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from tuneyard.scheduler.capacity import host_device
from tuneyard.scheduler.workers import alive_window_seconds, live_devices
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.jobs import Placed
from tuneyard.store.status import JobStatus


def trainable_devices(db: Database, settings: Settings) -> frozenset[str]:
    """`cpu` and/or `cuda`: what the live workers train on (this host's device when none declared one)."""
    with db.read() as session:
        return _trainable(live_devices(session, _window(settings)))


def waiting_reasons(session: Session, settings: Settings, rows: Sequence[Placed]) -> dict[str, str]:
    """Why each queued job requiring a device no live worker trains on waits:
    `waiting for a worker that trains on cuda; the live workers train on cpu`."""
    needing = [job for job in rows if job.status == JobStatus.QUEUED.value and job.required_device]
    if not needing:
        return {}
    declared = live_devices(session, _window(settings))
    have = _trainable(declared)
    live = (f"the live workers train on {', '.join(sorted(have))}" if declared
            else f"no worker is live, and one started here would train on {', '.join(have)}")
    return {job.id: f"waiting for a worker that trains on {job.required_device}; {live}"
            for job in needing if job.required_device not in have}


def _trainable(declared: list[str | None]) -> frozenset[str]:
    """Each live worker's device; for one that declared none (from before devices were kept), or when
    no worker is live, this host's."""
    known = {device for device in declared if device is not None}
    if not declared or None in declared:
        known.add(host_device())
    return frozenset(known)


def _window(settings: Settings) -> float:
    return alive_window_seconds(settings.lease_seconds, settings.heartbeat_seconds)
