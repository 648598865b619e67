"""How soon another process's write wakes a watcher here, and what the notices cost (store/notices.py).

A writer process appends a log line to a running job WRITES times, a random 50-250 ms apart, and prints
when each commit returned; this process watches the job (`Database.changes`, as an open stream does)
and records when each wake-up came. Latency = wake-up - commit, per write. Also: this process's CPU
time over IDLE seconds with a watched job and nobody writing (the follower's idle cost), and the median
time of one logged write on PostgreSQL with and without its NOTIFY. Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.stream_notices [--writes 50] [--idle 10] [--no-pg]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from benchmarks.queue import DEFAULT_PG_URL, fresh_postgres, fresh_sqlite
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import jobs, lifecycle, telemetry, tenancy
from tuneyard.store.engine import Database, make_engine
from tuneyard.store.migrate import migrate

WRITER = """
import random, sys, time
from tuneyard.settings import Settings
from tuneyard.store import telemetry
from tuneyard.store.engine import Database, make_engine
url, job_id, attempt, writes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
db = Database(make_engine(Settings(database_url=url)))
for i in range(writes):
    time.sleep(random.uniform(0.05, 0.25))
    started = time.time()
    telemetry.append_logs(db, job_id, attempt, [telemetry.LogIn(f"line {i}")])
    print(started, time.time(), flush=True)
db.dispose()
"""


def running_job(db: Database) -> tuple[str, int]:
    org = tenancy.create_org(db, "bench").id
    job_id = jobs.create_job(db, jobs.NewJob(org_id=org, type="finetune", spec={}, config={})).job.id
    claimed = claim(db, "bench", 600)
    assert claimed is not None
    lifecycle.start(db, job_id, claimed.attempt)
    return job_id, claimed.attempt


def latencies(db: Database, url: str, job_id: str, attempt: int, writes: int) -> list[float]:
    woken: list[float] = []
    read = [-1]  # the revision "read" so far: as a stream, a wake-up it has seen is dropped

    def wake(revision: int | None) -> None:
        if revision is None or revision > read[0]:
            woken.append(time.time())
            if revision is not None:
                read[0] = revision

    unwatch = db.changes.watch(job_id, wake)
    follower = db.changes.follower
    while follower is not None and not follower.connected.is_set():  # type: ignore[attr-defined]
        time.sleep(0.01)
    time.sleep(0.3)
    woken.clear()
    out = subprocess.run([sys.executable, "-c", WRITER, url, job_id, str(attempt), str(writes)],
                         capture_output=True, text=True, check=True).stdout
    time.sleep(0.5)
    unwatch()
    # From the write's return: a notice may come before its writer's own call has returned (then < 0).
    writes_made = [tuple(map(float, line.split())) for line in out.splitlines()]
    return [min((w for w in woken if w >= began), default=float("inf")) - ended for began, ended in writes_made]


def idle_cpu(db: Database, job_id: str, seconds: float) -> float:
    unwatch = db.changes.watch(job_id, lambda _revision: None)
    started = time.process_time()
    time.sleep(seconds)
    unwatch()
    return time.process_time() - started


def write_ms(db: Database, job_id: str, attempt: int, n: int = 200) -> tuple[float, float]:
    """Median ms of one logged write without and with its NOTIFY, the two alternated so load hits both alike."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(2 * n):
        db._announces = announce = bool(i % 2)  # the benchmark's switch: the NOTIFY priced alone
        started = time.perf_counter()
        telemetry.append_logs(db, job_id, attempt, [telemetry.LogIn(f"priced {i}")])
        times[announce].append(time.perf_counter() - started)
    db._announces = True
    return statistics.median(times[False]) * 1000, statistics.median(times[True]) * 1000


def run(name: str, fresh: Callable[[], AbstractContextManager[str]], writes: int, idle: float) -> None:
    with fresh() as url:
        db = Database(make_engine(Settings(database_url=url, data_dir=Path(os.getcwd()))))
        migrate(db.engine)
        job_id, attempt = running_job(db)
        priced = write_ms(db, job_id, attempt) if db.dialect == "postgresql" else None  # nobody listening yet
        lat = sorted(latencies(db, url, job_id, attempt, writes))
        cpu = idle_cpu(db, job_id, idle)
        p50, p90 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.9)] * 1000
        line = (f"{name:<11} wake-up after another process's commit: p50 {p50:.1f} ms, p90 {p90:.1f} ms, "
                f"max {lat[-1] * 1000:.1f} ms ({len(lat)} writes); idle CPU {cpu / idle * 1000:.2f} ms/s")
        if priced is not None:
            listened = write_ms(db, job_id, attempt)  # this process's follower listening now
            line += (f"; a logged write without / with NOTIFY: {priced[0]:.2f} / {priced[1]:.2f} ms with no "
                     f"listener, {listened[0]:.2f} / {listened[1]:.2f} ms with one (median)")
        print(line, flush=True)
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    backends: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [("SQLite", fresh_sqlite)]
    if not args.no_pg:
        pg = os.environ.get("TUNEYARD_TEST_PG_URL", DEFAULT_PG_URL)
        backends.append(("PostgreSQL", lambda: fresh_postgres(pg)))
    for name, fresh in backends:
        run(name, fresh, args.writes, args.idle)


if __name__ == "__main__":
    main()
