"""A per-subject sliding-window rate limit kept in the database, so it holds across API processes.

Each allowed request is a row; a check counts the subject's rows inside the window. Concurrent
checks for one subject are serialized by locking that subject's row in rate_limit_subjects
(SQLite needs no row lock: its write transactions are already serialized).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select

from tuneyard.store.engine import Database
from tuneyard.store.ids import utcnow
from tuneyard.store.tables import RateLimitHit, RateLimitSubject
from tuneyard.store.upsert import insert_ignoring_duplicates


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # 0 when allowed; else seconds until the oldest hit leaves the window
    reset_after_s: int  # seconds until the window is empty again


def hit(db: Database, subject: str, limit: int, window_s: float, *, now: datetime | None = None) -> RateDecision:
    """Count one request by `subject` if fewer than `limit` were allowed in the last `window_s`."""
    now = now or utcnow()
    start = now - timedelta(seconds=window_s)
    with db.write() as session:
        insert_ignoring_duplicates(session, RateLimitSubject, [{"subject": subject}], ("subject",))
        session.execute(select(RateLimitSubject).where(RateLimitSubject.subject == subject).with_for_update())
        session.execute(delete(RateLimitHit).where(RateLimitHit.subject == subject, RateLimitHit.ts <= start))
        count, oldest, newest = session.execute(
            # min() and max() keep the column's type, so these come back as aware datetimes.
            select(func.count(), func.min(RateLimitHit.ts), func.max(RateLimitHit.ts))
            .where(RateLimitHit.subject == subject)
        ).one()
        if count < limit:
            session.execute(insert(RateLimitHit).values(subject=subject, ts=now))
            reset = _seconds_until((oldest or now) + timedelta(seconds=window_s), now)
            return RateDecision(True, limit, limit - count - 1, 0, reset)
    retry = max(1, _seconds_until(oldest + timedelta(seconds=window_s), now))
    reset = _seconds_until(newest + timedelta(seconds=window_s), now)
    return RateDecision(False, limit, 0, retry, reset)


def _seconds_until(when: datetime, now: datetime) -> int:
    return max(0, math.ceil((when - now).total_seconds()))
