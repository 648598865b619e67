"""Admit a job: idempotency key, rate limit, job quota and insert in one transaction.

Doing these apart races: fifty concurrent retries of one request would all miss the key, all
spend rate-limit quota, and most be refused with 429 although only one job was ever wanted. Here
the caller's rate-limit row is locked first (SQLite: the write transaction itself), so requests of
one user are serialized; a retry then finds the first request's job and spends no quota. The
organization's row is locked next, for its quota of queued and running jobs (tuneyard.store.quotas):
always in this order, so two admissions never wait on each other's locks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneyard.store.engine import Database
from tuneyard.store.ids import utcnow
from tuneyard.store.jobs import NewJob, find_by_idempotency_key, insert_job
from tuneyard.store.quotas import NO_QUOTAS, Quotas, check_active_jobs
from tuneyard.store.ratelimit import RateDecision
from tuneyard.store.tables import Job, RateLimitHit, RateLimitSubject
from tuneyard.store.upsert import insert_ignoring_duplicates


@dataclass(frozen=True)
class Admission:
    job: Job | None  # None when the rate limit refused a new job
    created: bool
    decision: RateDecision  # the rate limit after this request (unchanged for a replay)


def admit_job(
    db: Database, new: NewJob, body_hash: str, *, subject: str, limit: int, window_s: float = 60.0,
    now: datetime | None = None, quotas: Quotas = NO_QUOTAS,
) -> Admission:
    """Return the job an earlier request with this key made, else rate-limit, check the
    organization's job quota and insert a new one.

    Raises IdempotencyConflict when the key was used with another body, QuotaExceeded when the
    organization has its quota of queued and running jobs (spending no rate-limit quota).
    """
    now = now or utcnow()
    try:
        with db.write() as session:
            insert_ignoring_duplicates(session, RateLimitSubject, [{"subject": subject}], ("subject",))
            session.execute(select(RateLimitSubject).where(RateLimitSubject.subject == subject).with_for_update())
            existing = find_by_idempotency_key(session, new, body_hash)
            decision = _count(session, subject, limit, window_s, now)
            if existing is not None:
                return Admission(existing, False, decision)
            if decision.remaining <= 0:
                return Admission(None, False, _refusal(session, subject, limit, window_s, now))
            check_active_jobs(session, new.org_id, quotas)
            session.execute(insert(RateLimitHit).values(subject=subject, ts=now))
            job = insert_job(session, new, body_hash)
            return Admission(job, True, RateDecision(True, limit, decision.remaining - 1, 0, decision.reset_after_s))
    except IntegrityError:
        # Only a request of the same user with the same key can collide; read what it made.
        with db.read() as session:
            existing = find_by_idempotency_key(session, new, body_hash)
        if existing is None:
            raise
        return Admission(existing, False, RateDecision(True, limit, 0, 0, 0))


def _count(session: Session, subject: str, limit: int, window_s: float, now: datetime) -> RateDecision:
    start = now - timedelta(seconds=window_s)
    session.execute(delete(RateLimitHit).where(RateLimitHit.subject == subject, RateLimitHit.ts <= start))
    count, oldest = session.execute(
        select(func.count(), func.min(RateLimitHit.ts)).where(RateLimitHit.subject == subject)
    ).one()
    reset = _seconds_until((oldest or now) + timedelta(seconds=window_s), now)
    return RateDecision(True, limit, max(0, limit - count), 0, reset)


def _refusal(session: Session, subject: str, limit: int, window_s: float, now: datetime) -> RateDecision:
    oldest, newest = session.execute(
        select(func.min(RateLimitHit.ts), func.max(RateLimitHit.ts)).where(RateLimitHit.subject == subject)
    ).one()
    retry = max(1, _seconds_until((oldest or now) + timedelta(seconds=window_s), now))
    reset = _seconds_until((newest or now) + timedelta(seconds=window_s), now)
    return RateDecision(False, limit, 0, retry, reset)


def _seconds_until(when: datetime, now: datetime) -> int:
    return max(0, math.ceil((when - now).total_seconds()))
