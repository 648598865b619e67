"""The worker registry: which workers exist, which are alive (heartbeat within a window), and the
memory and device each declared, which admission reads (`live_memory`, `live_devices`)."""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.ids import utcnow
from tuneyard.store.tables import Worker
from tuneyard.store.upsert import insert_ignoring_duplicates

WORKER_STATES = ("running", "draining", "stopped")


def new_worker_id() -> str:
    """host-pid-random: readable in events, unique across restarts of the same pid."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def register_worker(db: Database, worker_id: str, *, host: str | None = None, pid: int | None = None,
                    memory_bytes: int | None = None, device: str | None = None) -> None:
    """Add the worker (or mark it running again) with a fresh heartbeat and the memory it declares."""
    now = utcnow()
    declared = {"memory_bytes": memory_bytes, "device": device}
    row = {"id": worker_id, "host": host or socket.gethostname(), "pid": pid or os.getpid(),
           "state": "running", "started_at": now, "heartbeat_at": now, **declared}
    with db.write() as session:
        insert_ignoring_duplicates(session, Worker, [row], ("id",))
        session.execute(update(Worker).where(Worker.id == worker_id).values(
            state="running", heartbeat_at=now, **declared))


def worker_heartbeat(db: Database, worker_id: str, *, now: datetime | None = None) -> None:
    _set(db, worker_id, heartbeat_at=now or utcnow())


def set_worker_state(db: Database, worker_id: str, state: str) -> None:
    if state not in WORKER_STATES:
        raise ValueError(f"unknown worker state {state!r}")
    _set(db, worker_id, state=state, heartbeat_at=utcnow())


def _set(db: Database, worker_id: str, **values: object) -> None:
    with db.write() as session:
        done = session.execute(update(Worker).where(Worker.id == worker_id).values(**values))
        if done.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound("worker", worker_id)


def list_workers(db: Database) -> list[Worker]:
    with db.read() as session:
        return list(session.scalars(select(Worker).order_by(Worker.started_at)))


def workers_alive(db: Database, within_seconds: float, *, now: datetime | None = None) -> int:
    """Workers not stopped whose last heartbeat is at most `within_seconds` old."""
    stmt = select(func.count()).where(*_live(within_seconds, now))
    with db.read() as session:
        return session.scalar(stmt) or 0


def alive_window_seconds(lease_seconds: float, heartbeat_seconds: float) -> float:
    """How recent a heartbeat keeps a worker alive: a lease, or three missed heartbeats if longer."""
    return max(lease_seconds, 3 * heartbeat_seconds)


def live_memory(session: Session, within_seconds: float, *, device: str | None = None,
                now: datetime | None = None) -> list[int | None]:
    """The memory each live worker declared (None: it declared none), in a read the caller holds;
    with `device`, of the workers that train on it or declared no device (from before devices were kept)."""
    stmt = select(Worker.memory_bytes).where(*_live(within_seconds, now))
    if device is not None:
        stmt = stmt.where(or_(Worker.device == device, Worker.device.is_(None)))
    return list(session.scalars(stmt))


def live_devices(session: Session, within_seconds: float, *, now: datetime | None = None) -> list[str | None]:
    """The device each live worker declared (None: it declared none), in a read the caller holds."""
    return list(session.scalars(select(Worker.device).where(*_live(within_seconds, now))))


def _live(within_seconds: float, now: datetime | None) -> tuple[ColumnElement[bool], ...]:
    since = (now or utcnow()) - timedelta(seconds=within_seconds)
    return Worker.state != "stopped", Worker.heartbeat_at >= since
