"""A job whose run folder is kept on an S3-compatible server resumes on another machine.

Worker A (a `tuneyard worker` process with data folder A) trains it past a checkpoint; then A and its
runner are SIGKILLed and A's data folder is deleted, as a lost machine's disk is. Worker B (another
process, its own empty data folder B, the same database) claims the job once A's lease expires, fetches
the checkpoint from the server, resumes and completes: its weights are bitwise those of a separate,
uninterrupted run of the same spec, and final/ is both in B's folder and committed on the server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from sqlalchemy import select

pytest.importorskip("pyarrow.fs", reason="run storage on S3 needs pyarrow (tuneyard's s3 extra)")
pytest.importorskip("moto.server", reason="the S3 stand-in is moto's server (moto[server])")

from tests.support.runs import (
    EXACT_HYPERPARAMS,
    REPO,
    arithmetic_chat,
    final_tensors,
    run_runner,
    runner_argv,
    step_losses,
    telemetry,
    wait_for,
    write_jsonl,
)
from tests.support.s3_standin import CREDENTIALS, S3Standin, s3_server
from tests.support.service import Service, free_port, runner_pids
from tuneyard.settings import Settings
from tuneyard.store import Database, jobs, make_engine, migrate, tenancy
from tuneyard.store.tables import LogLine, TrainedModel
from tuneyard.store.telemetry import list_events
from tuneyard.training.run_storage import RemoteRun, RunStorage

HYPERPARAMS = {**EXACT_HYPERPARAMS, "max_steps": 40, "save_steps": 4, "save_total_limit": 2}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Standin]:
    with s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def _database(url: str, folder: Path) -> Database:
    database = Database(make_engine(Settings(data_dir=folder, database_url=url)))
    migrate(database.engine)
    return database


def _status(db: Database, job_id: str) -> str:
    return str(jobs.load_job(db, job_id).status)


def test_a_job_resumes_on_another_worker_from_run_storage(s3: S3Standin, tmp_path: Path, model_cache: Path) -> None:
    shared = tmp_path / "shared"  # what both machines see: the database and the training file
    shared.mkdir()
    data = write_jsonl(shared / "chat.jsonl", arithmetic_chat(24))
    url = f"sqlite:///{shared / 'tuneyard.db'}"
    db = _database(url, shared)
    config: dict[str, Any] = {"type": "finetune", "base_model": "tiny-llama", "method": "lora",
                              "datasets": [{"path": str(data), "format": "auto"}], "hyperparams": HYPERPARAMS}
    org = tenancy.create_org(db, "acme").id
    job_id = jobs.create_job(db, jobs.NewJob(org, "finetune", {"base_model": "tiny-llama"}, config)).job.id
    bucket = s3.create_bucket(f"runs-{uuid.uuid4().hex[:12]}")
    storage_env = {**s3.env(f"{bucket}/tuneyard"), "TUNEYARD_RUNNER_NICE": "0"}
    remote = RunStorage.open(f"{bucket}/tuneyard", s3.endpoint).run(job_id)
    assert isinstance(remote, RemoteRun)
    machine_a = Service(tmp_path / "a", url, model_cache)
    machine_b = Service(tmp_path / "b", url, model_cache)
    try:
        worker_a = machine_a.start_worker(**storage_env)
        run_a = machine_a.data_dir / "runs" / job_id

        def past_a_committed_checkpoint() -> bool:
            """Past a checkpoint on the server, with telemetry stored beyond the server's copy of it: the
            lines the store has and B will never see (B's runner must not be read from A's offset)."""
            committed = remote.committed_checkpoints()
            copied = remote.store.sizes("").get("telemetry.jsonl", 0)
            stored = jobs.load_job(db, job_id).telemetry_offset or 0
            return bool(committed) and max(step_losses(run_a), default=0) > committed[-1] and stored > copied

        wait_for(lambda: worker_a.poll() is not None or past_a_committed_checkpoint(), timeout=300, interval=0.05)
        assert worker_a.poll() is None, machine_a.log("worker.log")[-3000:]
        runners = runner_pids(run_a)
        worker_a.send_signal(signal.SIGKILL)  # the machine is lost: its worker, its runner and its disk
        for pid in runners:
            with contextlib.suppress(ProcessLookupError):  # it may have followed its worker already
                os.kill(pid, signal.SIGKILL)
        worker_a.wait()
        wait_for(lambda: not runner_pids(run_a), timeout=30)
        assert _status(db, job_id) not in ("completed", "failed"), "the job ended before the kill"
        killed_at = max(step_losses(run_a))
        shutil.rmtree(machine_a.data_dir)

        machine_b.start_worker(**storage_env)
        wait_for(lambda: _status(db, job_id) in ("completed", "failed", "cancelled"), timeout=600, interval=0.5)
        run_b = machine_b.data_dir / "runs" / job_id
        assert _status(db, job_id) == "completed", machine_b.log("worker.log")[-3000:] + _tail(run_b)
    finally:
        machine_a.stop_all()
        machine_b.stop_all()

    assert not machine_a.data_dir.exists()  # B never had A's folder to read
    job = jobs.load_job(db, job_id)
    assert job.retries == 1 and any(e.type == "lease_expired" for e in list_events(db, job_id))
    # B resumed from a checkpoint A committed: its runner's first step was past 0.
    records = telemetry(run_b)
    resumed = [i for i, r in enumerate(records) if r["kind"] == "log" and r["message"].startswith("resumed from")]
    assert resumed, _tail(run_b)
    first_step_b = next(r["step"] for r in records[resumed[-1]:] if r["kind"] == "metric")
    assert 1 < first_step_b <= killed_at + 1

    # Each runner's telemetry stored once: B's worker did not read again what A's had stored.
    assert _stored_logs(db, job_id, "training 40 steps") == 2

    # Bitwise the weights (and the losses) of a separate, uninterrupted run of the same spec.
    reference = _uninterrupted(tmp_path / "reference", config, model_cache)
    expected, actual = final_tensors(reference), final_tensors(run_b)
    assert expected.keys() == actual.keys() and expected
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
    assert step_losses(run_b) == step_losses(reference)

    # final/ is in B's data folder, where the store says the model is, and committed on the server.
    [model] = _trained_models(db, job_id)
    assert Path(model).is_relative_to(run_b) and (Path(model) / "manifest.json").is_file()
    assert remote.committed("final")
    fetched = remote.fetch_folder("final", tmp_path / "fetched")
    assert _files(fetched) == _files(run_b / "final")
    # Old checkpoints were pruned on the server as on B's disk.
    local = sorted(int(p.name[5:]) for p in (run_b / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert remote.committed_checkpoints() == local == [36, 40]
    db.dispose()


def test_a_checkpoint_that_cannot_be_uploaded_is_never_reported(tmp_path: Path, model_cache: Path) -> None:
    """Run storage gone mid-run: the runner fails as the platform's fault (retried), and its telemetry never
    names the checkpoint it sealed on its own disk but could not make durable."""
    data = write_jsonl(tmp_path / "chat.jsonl", arithmetic_chat(24))
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({"type": "finetune", "base_model": "tiny-llama", "method": "lora",
                                    "datasets": [{"path": str(data)}], "hyperparams": {**HYPERPARAMS, "max_steps": 8}}),
                    encoding="utf-8")
    run = tmp_path / "run"
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    argv = [*runner_argv(spec, run, model_cache), "--run-storage", "s3://bucket/runs/job-1",
            "--run-storage-endpoint", nowhere]
    env = {**os.environ, **CREDENTIALS, "PYTHONPATH": str(REPO)}
    run.mkdir()
    with open(run / "runner.log", "ab") as log:
        code = subprocess.run(argv, stdout=log, stderr=log, env=env, timeout=300).returncode
    assert code == 1, _tail(run)
    records = telemetry(run)
    [error] = [r for r in records if r["kind"] == "error"]
    assert error["error_type"] == "platform_error"
    # The first request of the commit fails (taking back an earlier manifest, before any file goes up).
    assert "run storage: delete of s3://bucket/runs/job-1/checkpoints/step-000004/manifest.json failed" in \
        error["message"], error
    assert (run / "checkpoints" / "step-000004" / "manifest.json").is_file()  # sealed here...
    assert not [r for r in records if r["kind"] == "checkpoint"]  # ...and never reported


def _uninterrupted(folder: Path, config: dict[str, Any], model_cache: Path) -> Path:
    """The bare runner on the request as a user writes it (not the job's resolved spec.json)."""
    folder.mkdir()
    (folder / "job.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert run_runner(folder / "job.yaml", folder / "run", model_cache, timeout=600) == 0, _tail(folder / "run")
    return folder / "run"


def _trained_models(db: Database, job_id: str) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(TrainedModel.path).where(TrainedModel.job_id == job_id)))


def _stored_logs(db: Database, job_id: str, start: str) -> int:
    with db.read() as session:
        return len(session.scalars(select(LogLine.seq).where(LogLine.job_id == job_id,
                                                             LogLine.message.startswith(start))).all())


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tail(run_dir: Path) -> str:
    log = run_dir / "runner.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no runner.log)"
