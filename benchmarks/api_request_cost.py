"""The server CPU of one poll, measured in-process: GETs of one running job driven straight into the
ASGI app (no sockets, no HTTP parsing, no load generator sharing the cores), one after another, and
the process's CPU time (`time.process_time`: every thread, so the request's trip to the thread pool
counts) divided by the requests. The median of several repeats is printed per kind of poll:

    job        GET /v1/jobs/{id}                         200, the job
    job_304    GET /v1/jobs/{id} with its ETag           304, decided from the job's row
    metrics    GET /v1/jobs/{id}/metrics?since_step=N-1  200, the one newest point
    list       GET /v1/jobs?limit=50                     200, a page of LISTED jobs
    list_304   GET /v1/jobs?limit=50 with its ETag       304, decided from the page's ids and revisions
    (and, for the dialects' polls, `--dialects`: OpenAI's, 002's and Archetype's job and its 304)

What this leaves out is what uvicorn adds per request (parsing, the socket); `api_load.py` measures
the whole server under load. The host is shared, so CPU time, not wall time, is the figure; it still
varies a few percent run to run. Asserts nothing.

    .venv/bin/python -m benchmarks.api_request_cost [--requests 2000] [--repeats 7] [--dialects]
        [--database-url URL] [--profile FILE]

`--profile FILE` writes a cProfile of one more repeat of every kind (the event loop's thread; the
request's work in the thread pool shows under `to_thread`, so use py-spy for that part:
`py-spy record -o out.svg -- .venv/bin/python -m benchmarks.api_request_cost`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tuneyard.api.app import API_THREADS, create_app
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import lifecycle, migrate, telemetry, tenancy
from tuneyard.store.engine import Database, make_engine

POINTS = 200
"""Metric points (and log lines) the job has: a run some minutes in."""
LISTED = 50
"""Jobs on the list page polled: the running one and queued ones behind it."""

Call = Callable[[], Awaitable[int]]


def chats(n: int) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                          {"role": "assistant", "content": f"{i + 1}."}]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def running_job(app: FastAPI, db: Database, key: str) -> str:
    """A job submitted through the API as a client would, claimed and started, with POINTS points and lines."""
    headers = {"Authorization": f"Bearer {key}"}
    client = TestClient(app)  # no lifespan: nothing runs in the background while CPU is counted
    file = client.post("/v1/files", headers=headers, files={"file": ("chats.jsonl", chats(16))}).json()
    dataset = client.post("/v1/datasets", headers=headers, json={"name": "chats", "file_ids": [file["id"]]}).json()
    job = client.post("/v1/jobs", headers=headers, json={
        "base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}], "hyperparams": {"max_steps": POINTS}})
    assert job.status_code == 201, job.text
    job_id: str = job.json()["id"]
    claimed = claim(db, "bench-worker", 600)
    assert claimed is not None
    lifecycle.start(db, job_id, claimed.attempt)
    points = [telemetry.MetricIn(step=s, values={"loss": 3.0 - s / POINTS, "lr": 1e-4, "tokens_per_s": 4000.0,
                                                "total_steps": POINTS, "eta_s": float(POINTS - s)})
              for s in range(1, POINTS)]
    telemetry.record_metrics(db, job_id, claimed.attempt, points)
    telemetry.append_logs(db, job_id, claimed.attempt, [telemetry.LogIn(f"step {s}") for s in range(1, POINTS)])
    for _ in range(LISTED - 1):
        queued = client.post("/v1/jobs", headers=headers, json={
            "base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}], "hyperparams": {"max_steps": POINTS}})
        assert queued.status_code == 201, queued.text
    return job_id


def asgi_get(app: FastAPI, path: str, query: str = "", headers: dict[str, str] | None = None) -> Call:
    """A GET sent straight to the app; returns its status (the body is read and dropped)."""
    raw = [(b"host", b"bench"), *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())]
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": query.encode(), "headers": raw, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000)}
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def call() -> int:
        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(scope), receive, send)
        return status

    return call


async def cpu_ms_per_request(name: str, call: Call, requests: int, expect: int) -> float:
    first = await call()
    if first != expect:
        raise SystemExit(f"{name}: expected {expect}, the app answered {first}")
    start = time.process_time()
    for _ in range(requests):
        await call()
    return (time.process_time() - start) * 1000 / requests


def polls(app: FastAPI, job_id: str, key: str, dialects: bool) -> dict[str, tuple[Call, int]]:
    headers = {"Authorization": f"Bearer {key}"}
    client = TestClient(app, base_url="http://bench")  # the host the ASGI calls name (Archetype's URLs show it)
    found: dict[str, tuple[Call, int]] = {}

    def both(name: str, path: str, query: str = "") -> None:
        tag = client.get(f"{path}?{query}", headers=headers).headers["ETag"]
        found[name] = (asgi_get(app, path, query, headers=headers), 200)
        found[f"{name}_304"] = (asgi_get(app, path, query, headers={**headers, "If-None-Match": tag}), 304)

    both("job", f"/v1/jobs/{job_id}")
    found["metrics"] = (asgi_get(app, f"/v1/jobs/{job_id}/metrics", f"since_step={POINTS - 2}", headers), 200)
    both("list", "/v1/jobs", f"limit={LISTED}")
    if dialects:
        both("openai_job", f"/v1/fine_tuning/jobs/{job_id}")
        both("local_training_job", f"/api/training/jobs/{job_id}")
        ftj = client.get(f"/v0.5/fine-tune/jobs/{job_id}", headers=headers).json()["id"]
        both("archetype_job", f"/v0.5/fine-tune/jobs/{ftj}")
    return found


async def measure(found: dict[str, tuple[Call, int]], requests: int, repeats: int,
                  profile: Path | None) -> dict[str, list[float]]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS  # as the app's lifespan sets
    figures: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(repeats):  # interleaved, so a busy moment of the host spreads over every kind
        for name, (call, expect) in found.items():
            figures[name].append(await cpu_ms_per_request(name, call, requests, expect))
    if profile is not None:
        profiler = cProfile.Profile()
        profiler.enable()
        for name, (call, expect) in found.items():
            await cpu_ms_per_request(name, call, requests, expect)
        profiler.disable()
        profiler.dump_stats(profile)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dialects", action="store_true", help="the dialects' job polls too")
    parser.add_argument("--database-url", help="a database to use (default: SQLite in a temporary folder)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of one more repeat here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), database_url=args.database_url or f"sqlite:///{folder}/bench.db",
                            job_create_rate_per_minute=LISTED)
        db = Database(make_engine(settings))
        migrate(db.engine)
        org = tenancy.create_org(db, "bench")
        _key, plaintext = tenancy.create_api_key(db, org.id, "bench")
        app = create_app(settings, db)
        job_id = running_job(app, db, plaintext)
        found = polls(app, job_id, plaintext, args.dialects)
        figures = asyncio.run(measure(found, args.requests, args.repeats, args.profile))
        db.dispose()
    print(f"server CPU per request, ms (median of {args.repeats} x {args.requests}; "
          f"{settings.database_url.split(':')[0]}):")
    for name, values in figures.items():
        print(f"  {name:<24} {statistics.median(values):6.3f}   (min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
