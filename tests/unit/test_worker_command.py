"""The runner's command line and environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tuneyard.errors import SettingsError
from tuneyard.settings import Settings
from tuneyard.worker.command import (
    hub_environment,
    rank_resources,
    runner_argv,
    runner_env,
    spec_ranks,
    storage_environment,
    thread_environment,
)
from tuneyard.worker.executors import Resources
from tuneyard.worker.pool import WorkerPool


def test_argv_runs_the_training_module_on_the_run_dirs_spec(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    run_dir = tmp_path / "runs" / "job-1"
    assert runner_argv(settings, run_dir) == [
        sys.executable, "-m", "tuneyard.training", str(run_dir / "spec.json"),
        "--run-dir", str(run_dir), "--model-cache-dir", str(tmp_path / "cache" / "models"), "--nice", "10",
    ]  # fmt: skip


def test_argv_leaves_the_priority_alone_at_nice_zero(tmp_path: Path) -> None:
    assert "--nice" not in runner_argv(Settings(data_dir=tmp_path, runner_nice=0), tmp_path)


def test_argv_uses_the_configured_interpreter_and_resume(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, runner_python="/opt/py/bin/python")
    argv = runner_argv(settings, tmp_path, resume="step-5")
    assert argv[0] == "/opt/py/bin/python"
    assert argv[-2:] == ["--resume", "step-5"]


def test_env_keeps_only_the_allowed_variables_and_adds_extras() -> None:
    inherited = {
        "PATH": "/usr/bin",
        "LC_ALL": "C.UTF-8",
        "TUNEYARD_DATABASE_URL": "postgresql://secret",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    env = runner_env(inherited, {"CUDA_VISIBLE_DEVICES": "0"})
    assert env == {"PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "0"}


def test_a_hub_set_for_the_service_is_the_runners_hf_endpoint(tmp_path: Path) -> None:
    """Models then come from the hub the API fetches datasets from; unset, the worker's own HF_ENDPOINT passes."""
    assert hub_environment(Settings(data_dir=tmp_path, hub_endpoint="http://hub.lan:8080")) == {
        "HF_ENDPOINT": "http://hub.lan:8080"}
    assert hub_environment(Settings(data_dir=tmp_path)) == {}
    assert runner_env({"HF_ENDPOINT": "https://hf-mirror.com"}, {}) == {"HF_ENDPOINT": "https://hf-mirror.com",
                                                                          "PYTHONUNBUFFERED": "1"}


def test_runners_side_by_side_share_the_cores(tmp_path: Path) -> None:
    """Each of N workers' runners gets cores // N threads (at least one); one worker's, all the cores."""
    cores = len(os.sched_getaffinity(0))
    settings = Settings(data_dir=tmp_path)
    assert thread_environment(settings, {}, 1) == {"OMP_NUM_THREADS": str(cores), "MKL_NUM_THREADS": str(cores)}
    share = str(max(1, cores // 2))
    assert thread_environment(settings, {}, 2) == {"OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share}
    assert thread_environment(settings, {}, cores * 4)["OMP_NUM_THREADS"] == "1"


def test_the_operators_thread_count_wins(tmp_path: Path) -> None:
    """The runner_threads setting over everything; else OMP_NUM_THREADS of the worker's environment, as is."""
    inherited = {"OMP_NUM_THREADS": "3"}
    assert thread_environment(Settings(data_dir=tmp_path), inherited, 8) == {}
    default = Settings(data_dir=tmp_path)
    assert runner_env(inherited, thread_environment(default, inherited, 8))["OMP_NUM_THREADS"] == "3"
    set_threads = Settings(data_dir=tmp_path, runner_threads=5)
    assert thread_environment(set_threads, inherited, 8) == {"OMP_NUM_THREADS": "5", "MKL_NUM_THREADS": "5"}
    with pytest.raises(SettingsError, match="TUNEYARD_RUNNER_THREADS"):
        Settings(data_dir=tmp_path, runner_threads=0)


def test_a_pools_runners_are_told_their_share(tmp_path: Path) -> None:
    pool = WorkerPool(None, Settings(data_dir=tmp_path), {"PATH": "/usr/bin"}, 2)  # type: ignore[arg-type]
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert {w.env["OMP_NUM_THREADS"] for w in pool.workers} == {share}


def test_argv_names_the_run_folders_copy_and_its_endpoint(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, run_storage="s3://bucket/runs", run_storage_endpoint="http://minio:9000")
    argv = runner_argv(settings, tmp_path, run_copy="s3://bucket/runs/job-1")
    assert argv[-4:] == ["--run-storage", "s3://bucket/runs/job-1", "--run-storage-endpoint", "http://minio:9000"]
    assert "--run-storage" not in runner_argv(Settings(data_dir=tmp_path), tmp_path)


def test_runners_get_the_aws_variables_only_where_run_storage_is_set(tmp_path: Path) -> None:
    inherited = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "eu-west-1",
                 "TUNEYARD_DATABASE_URL": "postgresql://u:p@db/t"}
    with_storage = Settings(data_dir=tmp_path, run_storage="s3://bucket")
    expected = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert storage_environment(with_storage, inherited) == expected
    assert storage_environment(Settings(data_dir=tmp_path), inherited) == {}


def test_a_rank_asks_its_threads_a_gpu_for_cuda_and_the_jobs_memory_estimate() -> None:
    threads = {"OMP_NUM_THREADS": "3"}
    assert rank_resources(threads, {"device": "cuda"}, 2**30) == Resources(cpus=3, gpus=1, memory_bytes=2**30)
    assert rank_resources(threads, {"device": "cpu"}, None) == Resources(cpus=3, gpus=0, memory_bytes=None)
    assert rank_resources({}, {}, None) == Resources(cpus=1)
    # admission weighed a node's need, every rank's estimate: each rank asks its own share
    two_ranks = {"distributed": {"num_processes": 2, "num_nodes": 3}}
    assert rank_resources(threads, two_ranks, 2 * 2**30) == Resources(cpus=3, gpus=0, memory_bytes=2**30)
    on_gpus = {**two_ranks, "device": "cuda"}  # a GPU each: admission weighed one process's estimate
    assert rank_resources(threads, on_gpus, 2**30) == Resources(cpus=3, gpus=1, memory_bytes=2**30)


def test_the_ranks_of_a_run_are_its_processes_on_every_node() -> None:
    assert spec_ranks({}) == 1
    assert spec_ranks({"distributed": {"num_processes": 2}}) == 2
    assert spec_ranks({"distributed": {"num_processes": 4, "num_nodes": 2}}) == 8
