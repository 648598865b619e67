"""The devices this server trains on now, for a request that names one (003's `backend`).

A live worker (heartbeat within the lease window, not stopped) declares its device when it registers;
a worker that declared none trains on this host's. With no worker registered yet, the answer is the
device a worker started here would declare, so a fresh laptop server still says what it can do.
"""

from __future__ import annotations

from datetime import timedelta

from tuneyard.scheduler import capacity
from tuneyard.scheduler.workers import alive_window_seconds, list_workers
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.ids import utcnow


def trainable_devices(db: Database, settings: Settings) -> frozenset[str]:
    """`cpu` and/or `cuda`: what the live workers train on (this host's device when none declared one)."""
    since = utcnow() - timedelta(seconds=alive_window_seconds(settings.lease_seconds, settings.heartbeat_seconds))
    live = {w.device for w in list_workers(db) if w.state != "stopped" and w.heartbeat_at >= since}
    if None in live or not live:
        live.discard(None)
        live.add("cuda" if capacity.gpu_memory_bytes() is not None else "cpu")
    return frozenset(d for d in live if d is not None)
