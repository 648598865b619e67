"""A per-subject sliding-window rate limit kept in the database, so it holds across API processes.

Each allowed request is a row in rate_limit_hits; a check counts the subject's rows inside the
window. It is applied where the limited thing is inserted, in the same transaction (job creation:
`admission.admit_job`), with the subject's row in rate_limit_subjects locked so that concurrent
checks for one subject are serialized (SQLite needs no row lock: its write transactions are).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # 0 when allowed; else seconds until the oldest hit leaves the window
    reset_after_s: int  # seconds until the window is empty again
