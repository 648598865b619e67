"""Chaos, bounded and seeded: serve's whole process group SIGKILLed at random moments while jobs
train, then restarted on the same data folder; runners killed alone until their retries run out.

Every job ends as it would have, once, and the store holds exactly what each run folder's
telemetry.jsonl says: every metric point, every log line once and in order, every checkpoint. The
service stores telemetry every 1.5 s here, so each kill leaves written lines the store has not yet
seen; the next attempt must store them as the dead one's, and not again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_service_jobs import submit
from tests.support.service import Service, runner_pids, wait_until
from tuneyard.client import TuneyardClient
from tuneyard.services import path_display
from tuneyard.services.path_display import PathDisplay
from tuneyard.settings import Settings
from tuneyard.store import Database, make_engine
from tuneyard.store.tables import Job
from tuneyard.training import contract

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SEED = 17
JOBS = 3
KILLS = 3
HYPERPARAMS = {"epochs": 4, "save_steps": 5}
SLOW_STORE = {"TUNEYARD_TELEMETRY_SECONDS": "1.5"}  # a wide window of lines written but not yet stored


def records(run_dir: Path) -> list[dict[str, Any]]:
    """The file's complete lines: a runner may be halfway through writing the last one."""
    path = run_dir / contract.TELEMETRY_FILE
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]] if path.exists() else []


def path_display_of(service: Service, job_id: str) -> PathDisplay:
    """How the service shows this job's server paths, read from the service's own database."""
    settings = Settings(data_dir=service.data_dir, database_url=service.database_url)
    db = Database(make_engine(settings))
    try:
        with db.read() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return path_display.for_job(session, settings, job)
    finally:
        db.dispose()


def assert_store_holds_the_run_folder(service: Service, client: TuneyardClient, job_id: str,
                                     ending: str = "completed") -> dict[str, int]:
    """The store's metrics, logs and checkpoints against the run folder's telemetry.jsonl, line by line.

    A resumed run writes the steps after its checkpoint again: the store keeps a step's first line.
    """
    lines = records(service.data_dir / "runs" / job_id)
    first: dict[tuple[str, int], dict[str, Any]] = {}
    for r in lines:
        if r["kind"] == contract.KIND_METRIC:
            first.setdefault(("train", r["step"]), {k: r[k] for k in contract.METRIC_VALUES if k in r})
        elif r["kind"] == contract.KIND_EVAL:
            first.setdefault(("eval", r["step"]), {k: r[k] for k in contract.EVAL_VALUES if k in r})
    assert {(m["kind"], m["step"]): m["values"] for m in client.metrics(job_id)} == first

    shown = path_display_of(service, job_id)  # clients see upload names where the runner wrote server paths
    logs = [(r["level"], shown.text(r["message"])) for r in lines if r["kind"] == contract.KIND_LOG]
    assert [(line["level"], line["message"]) for line in client.logs(job_id)] == logs  # each once, in order

    saved = [r for r in lines if r["kind"] == contract.KIND_CHECKPOINT]
    kept: dict[int, str] = {}
    for r in saved:
        for step in r.get("pruned") or ():
            kept.pop(step, None)
        kept.setdefault(r["step"], r["path"])
    assert [c["step"] for c in client.checkpoints(job_id)] == sorted(kept)
    events = client.events(job_id)
    for kind in (contract.KIND_CHECKPOINT, contract.KIND_PHASE):
        assert sum(e["type"] == kind for e in events) == sum(r["kind"] == kind for r in lines), kind
    assert [e["type"] for e in events].count(ending) == 1
    return {"metrics": len(first), "logs": len(logs), "checkpoints": len(saved), "lines": len(lines)}


def no_runner(run_dir: Path) -> bool:
    return not runner_pids(run_dir)


def training_now(service: Service, job_ids: list[str], sizes: dict[str, int]) -> str | None:
    """A job whose runner, started by the serve now up, has written a metric line (None if none)."""
    for job_id in job_ids:
        run_dir = service.data_dir / "runs" / job_id
        grown = records(run_dir)[sizes[job_id]:]
        if any(r["kind"] == contract.KIND_METRIC for r in grown) and runner_pids(run_dir):
            return job_id
    return None


def test_serve_killed_at_random_moments_loses_and_repeats_nothing(service: Service) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    serve = service.start_serve(own_group=True, **SLOW_STORE)
    client = service.client()
    job_ids = [submit(client, **HYPERPARAMS)["id"] for _ in range(JOBS)]
    for _ in range(KILLS):
        sizes = {j: len(records(service.data_dir / "runs" / j)) for j in job_ids}
        victim = wait_until(partial(training_now, service, job_ids, sizes), timeout=240, interval=0.2)
        time.sleep(rng.uniform(0.0, 3.0))
        assert all(len(runner_pids(service.data_dir / "runs" / j)) <= 1 for j in job_ids)
        os.killpg(serve.pid, signal.SIGKILL)  # the API and its workers at once; runners follow them
        serve.wait()
        wait_until(partial(no_runner, service.data_dir / "runs" / victim), timeout=10)
        serve = service.start_serve(own_group=True, **SLOW_STORE)
    done = [client.wait(j, timeout=600) for j in job_ids]
    assert [d["status"] for d in done] == ["completed"] * JOBS, [(d["id"], d["status"], d["error"]) for d in done]
    assert sorted(j["id"] for j in client.list_jobs()["data"]) == sorted(job_ids)  # none duplicated
    figures = [assert_store_holds_the_run_folder(service, client, j) for j in job_ids]
    retried = sum(d["retries"] for d in done)
    print(f"chaos: seed {SEED}, {JOBS} jobs, {KILLS} kills of serve's group, {retried} retries, "
          f"{figures} compared, {time.monotonic() - started:.0f}s")


def kill_runner_when_training(service: Service, job_id: str) -> int:
    """SIGKILL the job's runner once it has trained a step; returns how many lines the file had."""
    run_dir = service.data_dir / "runs" / job_id
    before = len(records(run_dir))
    [pid] = wait_until(lambda: training_now(service, [job_id], {job_id: before}) and runner_pids(run_dir),
                       timeout=240, interval=0.1)
    os.kill(pid, signal.SIGKILL)
    wait_until(partial(no_runner, run_dir), timeout=10)
    return before


def test_runner_kills_are_retried_up_to_max_retries_then_the_job_fails(service: Service) -> None:
    service.start_serve(TUNEYARD_MAX_RETRIES="1")
    client = service.client()
    survives, gives_up = (submit(client, epochs=2, save_steps=3)["id"] for _ in range(2))
    kill_runner_when_training(service, survives)
    kill_runner_when_training(service, gives_up)
    kill_runner_when_training(service, gives_up)
    done = client.wait(survives, timeout=300)
    assert (done["status"], done["retries"]) == ("completed", 1), done
    failed = client.wait(gives_up, timeout=300)
    assert (failed["status"], failed["retries"], failed["attempt"]) == ("failed", 1, 2), failed
    assert failed["error"]["error_type"] == "platform_error" and "gave up after 1 retries" in failed["error"]["message"]
    assert_store_holds_the_run_folder(service, client, survives)
    assert_store_holds_the_run_folder(service, client, gives_up, "failed")
