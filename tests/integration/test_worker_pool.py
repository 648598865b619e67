"""A pool whose only worker is busy still heartbeats and still reaps other workers' expired leases."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tests.integration.test_supervisor import FAKE_RUNNER
from tests.support.service import wait_until
from tuneyard.scheduler import claim
from tuneyard.scheduler.workers import workers_alive
from tuneyard.settings import Settings
from tuneyard.store import Database, jobs, lifecycle
from tuneyard.worker.executors import Launch
from tuneyard.worker.executors.local import LocalExecutor, LocalProcess
from tuneyard.worker.pool import WorkerPool


class HangingRunners(LocalExecutor):
    """Runs the fake runner, which trains forever, in place of the real one."""

    def start(self, launch: Launch) -> LocalProcess:
        argv = [sys.executable, str(FAKE_RUNNER), "--run-dir", str(launch.run_dir), "--then", "hang"]
        return super().start(replace(launch, argv=argv))


def test_a_busy_pool_stays_alive_and_reaps_a_dead_workers_job(
    db: Database, settings: Settings, new_job: Callable[..., str], org_id: str
) -> None:
    settings = replace(settings, lease_seconds=1.0, heartbeat_seconds=0.2, poll_seconds=0.05)
    busy = new_job()
    pool = WorkerPool(db, settings, {}, 1, executor=HangingRunners())
    pool.start()
    try:
        # The pool's worker is busy before the ghost claims: were the orphan queued first, a pool slow to
        # start (a loaded host) could find it already reaped and claim it instead of `busy`.
        wait_until(lambda: jobs.get_job(db, org_id, busy).status == "running", timeout=60)
        orphan = new_job()
        ghost = claim(db, "ghost-worker", lease_seconds=1.0)  # a worker that dies right after its claim
        assert ghost is not None and ghost.job_id == orphan
        lifecycle.start(db, orphan, ghost.attempt)
        reaped = wait_until(lambda: (job := jobs.get_job(db, org_id, orphan)).status == "queued" and job, timeout=30)
        assert reaped.retries == 1
        assert jobs.get_job(db, org_id, busy).status == "running"  # the pool's worker never came up for air
        time.sleep(2 * settings.lease_seconds)
        assert workers_alive(db, within_seconds=settings.lease_seconds) == 1  # the ghost is not
    finally:
        pool.drain()
    assert jobs.get_job(db, org_id, busy).status == "queued"  # handed back, not lost


def test_settings_default_keeps_runners_below_the_service(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).runner_nice == 10
    assert Settings.from_env({"TUNEYARD_RUNNER_NICE": "0"}).runner_nice == 0
