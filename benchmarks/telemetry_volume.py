"""Database rows and bytes one job's telemetry costs, per step and per hour, on PostgreSQL.

A real `tuneyard serve` on a fresh PostgreSQL schema trains one tiny-llama job of STEPS steps; then,
for each telemetry table (metric_points, log_lines, job_events), its rows for the job, their payload
(`pg_column_size` of each row) and the table's whole size on disk with its indexes
(`pg_total_relation_size`: the schema holds this one job, so that is its cost, rounded up to 8 KiB
pages). Per hour is per step times the steps an hour at each `--steps-per-s` rate: telemetry grows
with steps, not with a model's size. Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.telemetry_volume [--steps 120] [--pg-url URL] [--steps-per-s 1 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from benchmarks.queue import DEFAULT_PG_URL, fresh_postgres
from benchmarks.service_bench import Served, job_spec, load_average, make_dataset

TABLES = ("metric_points", "log_lines", "job_events")


def volume(url: str, job_id: str) -> dict[str, tuple[int, int, int]]:
    """Per table: (rows of the job, their payload bytes, the table's bytes on disk with indexes)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {table: tuple(conn.execute(text(
                f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0), pg_total_relation_size('{table}') "
                f"FROM {table} t WHERE job_id = :job"), {"job": job_id}).one())
                for table in TABLES}
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> dict[str, tuple[int, int, int]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--pg-url", default=os.environ.get("TUNEYARD_TEST_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--steps-per-s", type=float, nargs="+", default=[1.0, 5.0])
    args = parser.parse_args(argv)
    print(f"before: {load_average()}", flush=True)
    with fresh_postgres(args.pg_url) as url, tempfile.TemporaryDirectory(prefix="tuneyard-bench-tel-") as tmp:
        served = Served(Path(tmp) / "data", database_url=url)
        served.start()
        try:
            with served.client() as client:
                job = client.create_job(job_spec(make_dataset(client), max_steps=args.steps))
                done = client.wait(job["id"], timeout=1800, poll=0.5)
        finally:
            served.stop()
        if done["status"] != "completed":
            raise RuntimeError(f"job {job['id']} ended {done['status']}: {done.get('error')}")
        figures = volume(url, job["id"])
    print(f"\none tiny-llama job of {args.steps} steps on PostgreSQL")
    rates = args.steps_per_s
    print(f"{'table':<14} {'rows':>6} {'payload B':>10} {'on disk B':>10} {'rows/step':>10} {'B/step':>8}"
          + "".join(f" {f'MB/h @{r:g}/s':>12}" for r in rates))
    for table, (rows, payload, disk) in figures.items():
        per_step = disk / args.steps
        print(f"{table:<14} {rows:>6} {payload:>10} {disk:>10} {rows / args.steps:>10.2f} {per_step:>8.0f}"
              + "".join(f" {per_step * r * 3600 / 1e6:>12.1f}" for r in rates))
    print(f"after: {load_average()}")
    return figures


if __name__ == "__main__":
    main()
