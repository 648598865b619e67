"""The per-user sliding-window limit holds across processes sharing one database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from tuneyard.store import Database, ratelimit
from tuneyard.store.ids import utcnow


def test_n_per_window_then_refused_with_retry_after_across_two_engines(
    db: Database, open_db: Callable[[], Database]
) -> None:
    api_a, api_b = db, open_db()
    t0 = utcnow()
    decisions = [ratelimit.hit((api_a, api_b)[i % 2], "key_1", 5, 60, now=t0 + timedelta(seconds=i))
                 for i in range(5)]
    assert [d.allowed for d in decisions] == [True] * 5
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    refused = ratelimit.hit(api_b, "key_1", 5, 60, now=t0 + timedelta(seconds=10))
    assert (refused.allowed, refused.remaining, refused.retry_after_s) == (False, 0, 50)
    assert ratelimit.hit(api_a, "key_2", 5, 60, now=t0).allowed  # another user has their own window
    # The oldest hit leaves the window: one more is allowed, then refused again.
    assert ratelimit.hit(api_a, "key_1", 5, 60, now=t0 + timedelta(seconds=60.5)).allowed
    again = ratelimit.hit(api_b, "key_1", 5, 60, now=t0 + timedelta(seconds=60.7))
    assert (again.allowed, again.retry_after_s) == (False, 1)  # the hit at t0+1 leaves at t0+61


def test_concurrent_hits_never_exceed_the_limit(db: Database, open_db: Callable[[], Database]) -> None:
    engines = [db, open_db(), open_db()]
    allowed: list[bool] = []
    start = threading.Barrier(30)

    def go(i: int) -> None:
        start.wait()
        allowed.append(ratelimit.hit(engines[i % 3], "key_x", 20, 60).allowed)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(allowed) == [False] * 10 + [True] * 20
