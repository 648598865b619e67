"""Claim, leases and heartbeats, the reaper, the worker registry.

Every write a worker makes carries the attempt its claim handed out; see tuneyard.store.status.
"""

from __future__ import annotations

from tuneyard.scheduler.queue import ClaimedJob, Lease, claim, heartbeat, queue_depth, queue_position, release
from tuneyard.scheduler.reaper import ReapedJob, reap

__all__ = [
    "ClaimedJob",
    "Lease",
    "ReapedJob",
    "claim",
    "heartbeat",
    "queue_depth",
    "queue_position",
    "reap",
    "release",
]
