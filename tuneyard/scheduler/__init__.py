"""Leases and heartbeats, where queued jobs stand, the worker registry.

Claim, release and reap are moves of a job's life, defined in tuneyard.store.lifecycle beside the
state machine; they are named here too because they are the worker loop's scheduling steps (claim
through `queue.claim`, which gives a worker that declared no device this host's).
Every write a worker makes carries the attempt its claim handed out; see tuneyard.store.status.
"""

from __future__ import annotations

from tuneyard.scheduler.queue import Lease, claim, heartbeat, queue_depth, queue_position
from tuneyard.store.lifecycle import ClaimedJob, ReapedJob, reap, release

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
