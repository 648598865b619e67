"""Jobs through the ray executor on a local Ray cluster started for this module (`ray start --head`, 2
CPUs), each against the same spec through the local executor: a real worker, store and runner.

One spec for every one-process job (30 steps, a checkpoint every 3) and its two-rank version; the
local executor's uninterrupted runs of them are the references every Ray job's weights must equal.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.ray_cluster import local_ray_cluster
from tests.support.runs import (
    EXACT_HYPERPARAMS,
    arithmetic_chat,
    final_tensors,
    step_losses,
    wait_for,
    write_jsonl,
)
from tuneyard.scheduler import claim
from tuneyard.services import jobs as job_service
from tuneyard.settings import Settings
from tuneyard.store import Database, jobs, make_engine, migrate, tenancy
from tuneyard.store.telemetry import list_events, list_metrics
from tuneyard.worker.loop import Worker

ray = pytest.importorskip("ray", reason="the ray extra (pip install 'tuneyard[ray]') is not installed")

STEPS = 30
MEMORY_ESTIMATE = 256 * 1024**2
"""A memory estimate the jobs carry, so that the actor asks the cluster for memory as a real job would."""


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """One local cluster for the module (2 CPUs), stopped after it."""
    with local_ray_cluster(cpus=2) as address:
        yield address


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", arithmetic_chat(24))


def _config(chat: Path, processes: int = 1) -> dict[str, Any]:
    config: dict[str, Any] = {
        "type": "finetune", "base_model": "tiny-llama", "datasets": [{"path": str(chat), "format": "auto"}],
        "method": "lora", "hyperparams": {**EXACT_HYPERPARAMS, "max_steps": STEPS, "save_steps": 3},
    }  # fmt: skip
    if processes > 1:
        config["distributed"] = {"strategy": "ddp", "num_processes": processes, "num_nodes": 1}
    return config


class Service:
    """A data folder, its SQLite store and an organization, with jobs run by a worker of `settings`."""

    def __init__(self, folder: Path, settings: Settings) -> None:
        self.settings = replace(settings, data_dir=folder / "data")
        self.settings.data_dir.mkdir(parents=True)
        self.db = Database(make_engine(self.settings))
        migrate(self.db.engine)
        self.org = tenancy.create_org(self.db, "acme").id

    def submit(self, config: dict[str, Any]) -> str:
        new = jobs.NewJob(self.org, "finetune", {"base_model": "tiny-llama"}, config,
                          memory_estimate_bytes=MEMORY_ESTIMATE)
        return jobs.create_job(self.db, new).job.id

    def attempt(self, job_id: str) -> threading.Thread:
        """Claim the job and run one attempt of it in a thread, as a worker does."""
        claimed = claim(self.db, "test-worker", self.settings.lease_seconds)
        assert claimed is not None and claimed.job_id == job_id
        worker = Worker(self.db, self.settings, os.environ)
        thread = threading.Thread(target=worker.run_job, args=(claimed, threading.Event()))
        thread.start()
        return thread

    def run(self, job_id: str) -> str:
        thread = self.attempt(job_id)
        thread.join(timeout=300)
        assert not thread.is_alive()
        return self.status(job_id)

    def status(self, job_id: str) -> str:
        return job_service.get_job(self.db, self.settings, self.org, job_id).status

    def run_dir(self, job_id: str) -> Path:
        return self.settings.data_dir / "runs" / job_id

    def log(self, job_id: str) -> str:
        return (self.run_dir(job_id) / "runner.log").read_text()


def _settings(model_cache: Path, executor: str = "local", address: str = "auto") -> Settings:
    # Two threads a runner (one a rank), the 2-CPU cluster's whole; stop requests read at each heartbeat.
    return Settings(model_cache_dir=model_cache, runner_nice=0, runner_threads=2, heartbeat_seconds=0.5,
                    executor=executor, ray_address=address)


Reference = tuple[Service, str]
"""A service and its job, run through the local executor uninterrupted."""


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, chat: Path) -> dict[int, Reference]:
    """The references, by processes: each spec once through the local executor, uninterrupted."""
    references = {}
    for processes in (1, 2):
        service = Service(tmp_path_factory.mktemp(f"local{processes}"), _settings(model_cache))
        job_id = service.submit(_config(chat, processes))
        assert service.run(job_id) == "completed", service.log(job_id)
        references[processes] = (service, job_id)
    return references


@pytest.fixture
def on_ray(tmp_path: Path, model_cache: Path, ray_address: str) -> Service:
    return Service(tmp_path, _settings(model_cache, "ray", ray_address))


def _weights(service: Service, job_id: str) -> dict[str, Any]:
    return final_tensors(service.run_dir(job_id))


def _assert_same_weights(service: Service, job_id: str, reference: Reference) -> None:
    ours, theirs = _weights(service, job_id), _weights(*reference)
    assert ours.keys() == theirs.keys()
    assert all(ours[name].equal(theirs[name]) for name in ours), "final weights differ from the local run's"


def _metric_rows(service: Service, job_id: str) -> list[tuple[Any, ...]]:
    return [(m.step, m.kind, m.values.get("loss"), sorted(m.values)) for m in list_metrics(service.db, job_id)]


def test_a_job_on_ray_ends_as_on_the_local_executor(on_ray: Service, local_runs: dict[int, Reference],
                                                    chat: Path) -> None:
    local, local_job = local_runs[1]
    job_id = on_ray.submit(_config(chat))
    assert on_ray.run(job_id) == "completed", on_ray.log(job_id)
    ours = job_service.get_job(on_ray.db, on_ray.settings, on_ray.org, job_id)
    theirs = job_service.get_job(local.db, local.settings, local.org, local_job)
    assert (ours.retries, ours.attempt, ours.last_checkpoint_step) == (theirs.retries, theirs.attempt,
                                                                      theirs.last_checkpoint_step)
    assert _metric_rows(on_ray, job_id) == _metric_rows(local, local_job)
    for folder in ("final", "checkpoints"):
        ours_listed = sorted(p.name for p in (on_ray.run_dir(job_id) / folder).iterdir())
        assert ours_listed == sorted(p.name for p in (local.run_dir(local_job) / folder).iterdir()), folder
    _assert_same_weights(on_ray, job_id, local_runs[1])


def _runners_of(run_dir: Path) -> list[psutil.Process]:
    """The runner processes training in `run_dir` (a rank's each, for a data-parallel run)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if "tuneyard.training" in cmdline and str(run_dir) in cmdline and process.info["status"] != "zombie":
            found.append(process)
    return found


def _runner_of(run_dir: Path) -> psutil.Process:
    runners = _runners_of(run_dir)
    assert len(runners) == 1, f"{len(runners)} runners of {run_dir}"
    return runners[0]


def _checkpointed(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("step-*/manifest.json"))


def test_a_killed_ray_worker_is_a_lost_attempt_that_the_queue_retries(on_ray: Service,
                                                                       local_runs: dict[int, Reference],
                                                                       chat: Path) -> None:
    job_id = on_ray.submit(_config(chat))
    run_dir = on_ray.run_dir(job_id)
    thread = on_ray.attempt(job_id)
    wait_for(lambda: _checkpointed(run_dir) or not thread.is_alive())
    runner = _runner_of(run_dir)
    host = runner.parent()
    assert host is not None and host.name().startswith("ray::"), host  # the Ray worker hosting the runner
    host.kill()
    thread.join(timeout=120)
    assert not runner.is_running() or runner.status() == psutil.STATUS_ZOMBIE  # it ended with its host
    assert max(step_losses(run_dir)) < STEPS, "the run ended before its host was killed"
    lost = job_service.get_job(on_ray.db, on_ray.settings, on_ray.org, job_id)
    assert (lost.status, lost.retries) == ("queued", 1), on_ray.log(job_id)
    assert "attempt 1 failed: runner was lost (its Ray actor or node died" in _retry_message(on_ray, job_id)
    assert on_ray.run(job_id) == "completed", on_ray.log(job_id)
    _assert_same_weights(on_ray, job_id, local_runs[1])


def _retry_message(service: Service, job_id: str) -> str:
    return next(e.message for e in list_events(service.db, job_id) if e.type == "retrying")


def test_a_dead_rank_on_ray_train_fails_the_attempt_naming_it(on_ray: Service, chat: Path) -> None:
    job_id = on_ray.submit(_config(chat, processes=2))
    run_dir = on_ray.run_dir(job_id)
    thread = on_ray.attempt(job_id)
    wait_for(lambda: max(step_losses(run_dir), default=0) >= 2 or not thread.is_alive(), timeout=180)
    rank1 = next(p for p in _runners_of(run_dir) if p.environ().get("RANK") == "1")
    rank1.kill()
    thread.join(timeout=60)  # the other rank is ended too, not left waiting in its next collective
    assert not thread.is_alive()
    failed = job_service.get_job(on_ray.db, on_ray.settings, on_ray.org, job_id)
    assert (failed.status, failed.retries) == ("queued", 1), on_ray.log(job_id)
    assert "rank 1 of the distributed run was killed by SIGKILL" in _retry_message(on_ray, job_id)
    assert not _runners_of(run_dir)


def test_a_cancel_reaches_every_rank_on_ray_and_frees_the_cluster(on_ray: Service, chat: Path) -> None:
    job_id = on_ray.submit(_config(chat, processes=2))
    run_dir = on_ray.run_dir(job_id)
    thread = on_ray.attempt(job_id)
    wait_for(lambda: max(step_losses(run_dir), default=0) >= 2 or not thread.is_alive(), timeout=180)
    ranks = _runners_of(run_dir)
    assert len(ranks) == 2
    job_service.cancel_job(on_ray.db, on_ray.settings, on_ray.org, job_id)
    thread.join(timeout=120)
    assert on_ray.status(job_id) == "cancelled"
    assert not any(rank.is_running() and rank.status() != psutil.STATUS_ZOMBIE for rank in ranks)
    # Ray Train's workers and their placement group are gone with the attempt: the next job finds the CPUs.
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0, timeout=60)


def test_a_two_rank_job_on_ray_train_is_stopped_resumed_and_ends_as_locally(on_ray: Service,
                                                                              local_runs: dict[int, Reference],
                                                                              chat: Path) -> None:
    job_id = on_ray.submit(_config(chat, processes=2))
    run_dir = on_ray.run_dir(job_id)
    thread = on_ray.attempt(job_id)
    wait_for(lambda: max(step_losses(run_dir), default=0) >= 4 or not thread.is_alive(), timeout=180)
    job_service.stop_job(on_ray.db, on_ray.settings, on_ray.org, job_id)
    thread.join(timeout=180)
    assert on_ray.status(job_id) == "stopped", on_ray.log(job_id)
    stopped_at = max(step_losses(run_dir))
    assert stopped_at < STEPS and (run_dir / "checkpoints" / f"step-{stopped_at:06d}" / "manifest.json").exists()
    assert "data-parallel on 2 processes" in on_ray.log(job_id)

    job_service.resume_job(on_ray.db, on_ray.settings, on_ray.org, job_id)
    assert on_ray.run(job_id) == "completed", on_ray.log(job_id)
    assert sorted(step_losses(run_dir)) == list(range(1, STEPS + 1))
    _assert_same_weights(on_ray, job_id, local_runs[2])


def test_a_stop_reaches_the_runner_on_ray_and_leaves_it_resumable(on_ray: Service, local_runs: dict[int, Reference],
                                                                   chat: Path) -> None:
    job_id = on_ray.submit(_config(chat))
    run_dir = on_ray.run_dir(job_id)
    thread = on_ray.attempt(job_id)
    wait_for(lambda: max(step_losses(run_dir), default=0) >= 2 or not thread.is_alive())
    started = time.monotonic()
    job_service.stop_job(on_ray.db, on_ray.settings, on_ray.org, job_id)
    thread.join(timeout=120)
    assert on_ray.status(job_id) == "stopped", on_ray.log(job_id)
    assert time.monotonic() - started < 30  # by the runner's own checkpoint, not the 60 s grace's kill
    stopped_at = max(step_losses(run_dir))
    assert (run_dir / "checkpoints" / f"step-{stopped_at:06d}" / "manifest.json").exists()
    job_service.resume_job(on_ray.db, on_ray.settings, on_ray.org, job_id)
    assert on_ray.run(job_id) == "completed", on_ray.log(job_id)
    _assert_same_weights(on_ray, job_id, local_runs[1])
