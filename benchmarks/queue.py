"""Claims per second with 1, 4 and 8 workers, on SQLite (a file) and on PostgreSQL.

Each worker is a thread with its own engine, as a worker process would have (the database
drivers release the GIL while they wait). Every run starts from a fresh database holding JOBS
queued jobs and ends when the queue is empty. Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.queue [--jobs 2000] [--pg-url URL | --no-pg]

(As a module, from the repository root: run as a script, this file would shadow the standard
library's `queue` module.)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import Database, make_engine, migrate, tenancy
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.tables import Job

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def fresh_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


@contextmanager
def fresh_postgres(base_url: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def fill_queue(db: Database, jobs: int) -> None:
    org = tenancy.create_org(db, "bench").id
    now = utcnow()
    rows = [{"id": new_id("job"), "org_id": org, "type": "finetune", "status": "queued", "spec": {},
             "config": {}, "progress": {}, "created_at": now} for _ in range(jobs)]
    with db.write() as session:
        session.execute(insert(Job), rows)


def run(url: str, workers: int, jobs: int) -> float:
    settings = Settings(database_url=url)
    setup = Database(make_engine(settings))
    migrate(setup.engine)
    fill_queue(setup, jobs)
    dbs = [Database(make_engine(settings)) for _ in range(workers)]
    barrier = threading.Barrier(workers + 1)
    counts = [0] * workers

    def work(i: int) -> None:
        barrier.wait()
        while claim(dbs[i], f"bench-{i}", 60) is not None:
            counts[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for db in [setup, *dbs]:
        db.dispose()
    assert sum(counts) == jobs, "every job is claimed exactly once"
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--pg-url", default=os.environ.get("TUNEYARD_TEST_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    backends = [("sqlite", fresh_sqlite)]
    if not args.no_pg:
        backends.append(("postgresql", lambda: fresh_postgres(args.pg_url)))
    print(f"{'database':<12}{'workers':>8}{'claims/s':>12}   ({args.jobs} jobs, cores: {os.cpu_count()})")
    for name, fresh in backends:
        for workers in (1, 4, 8):
            try:
                with fresh() as url:
                    rate = run(url, workers, args.jobs)
            except Exception as exc:  # e.g. no PostgreSQL here: say so and go on
                print(f"{name:<12}{workers:>8}   skipped: {exc.__class__.__name__}: {exc}")
                break
            print(f"{name:<12}{workers:>8}{rate:>12.0f}")


if __name__ == "__main__":
    main()
