"""The data folder is private to its user (issue 17, F7): every file a runner, a worker or SQLite
writes is 0600 and every folder 0700, whatever umask started them; what an older version left
readable is fixed when serve or worker starts, with a warning naming it."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.runs import EXACT_HYPERPARAMS, REPO, arithmetic_chat, runner_argv, write_jsonl, write_spec
from tuneyard.cli.serve import _open
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import jobs, tenancy
from tuneyard.worker.loop import Worker


def test_everything_a_runner_writes_is_private(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", arithmetic_chat(16))
    spec = write_spec(tmp_path, data, max_steps=2, save_steps=1)
    run_dir = tmp_path / "runs" / "job-1"
    old = os.umask(0o022)  # a permissive umask, as a shell's usually is
    try:
        done = subprocess.run(runner_argv(spec, run_dir, model_cache), env={**os.environ, "PYTHONPATH": str(REPO)},
                              capture_output=True, timeout=300)
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    written = [run_dir, *run_dir.rglob("*")]
    assert (run_dir / "final").is_dir() and (run_dir / "checkpoints").is_dir() and len(written) > 10
    readable = [f"{p.relative_to(run_dir)} {stat.S_IMODE(p.lstat().st_mode):04o}" for p in written
                if not p.is_symlink() and p.lstat().st_mode & 0o077]
    assert readable == []
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in written if p.is_dir() and not p.is_symlink())


@pytest.fixture
def restored_umask() -> Iterator[None]:
    """`tuneyard serve` sets the process's umask; put this test process's back afterwards."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_after_serve_starts_and_a_job_runs_the_whole_data_folder_is_private(
    tmp_path: Path, model_cache: Path, restored_umask: None, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_cache_dir=model_cache, runner_nice=0)
    (settings.data_dir / "files").mkdir(parents=True, mode=0o755)  # as an older version left it
    (settings.data_dir / "files" / "old.jsonl").write_text("{}\n")
    os.chmod(settings.data_dir / "files" / "old.jsonl", 0o644)
    os.chmod(settings.data_dir, 0o755)

    with caplog.at_level(logging.WARNING, logger="tuneyard.permissions"):
        db = _open(settings)  # what `serve` and `worker` do first
    try:
        warning = caplog.records[0].getMessage()
        assert "files/old.jsonl 0644 -> 0600" in warning and "files 0755 -> 0700" in warning
        assert ". 0755 -> 0700" in warning
        data = write_jsonl(tmp_path / "chats.jsonl", arithmetic_chat(16))
        config = {"type": "finetune", "base_model": "tiny-llama", "datasets": [{"path": str(data)}],
                  "method": "lora", "hyperparams": {**EXACT_HYPERPARAMS, "max_steps": 2, "save_steps": 1}}
        org = tenancy.create_org(db, "acme").id
        job_id = jobs.create_job(db, jobs.NewJob(org, "finetune", {"base_model": "tiny-llama"}, config,
                                                 max_retries=0)).job.id
        claimed = claim(db, "test-worker", settings.lease_seconds)
        assert claimed is not None
        Worker(db, settings, os.environ).run_job(claimed, threading.Event())
        assert jobs.get_job(db, org, job_id).status == "completed"
    finally:
        db.dispose()

    written = [settings.data_dir, *settings.data_dir.rglob("*")]
    names = {p.name for p in written}
    assert {"tuneyard.db", "spec.json", "telemetry.jsonl", "final"} <= names
    readable = [f"{p.relative_to(settings.data_dir)} {stat.S_IMODE(p.lstat().st_mode):04o}" for p in written
                if not p.is_symlink() and p.lstat().st_mode & 0o077]
    assert readable == []
