"""The runner's command line and environment, built from Settings and what the caller passes in."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from tuneyard.scheduler.capacity import cpu_share
from tuneyard.settings import Settings
from tuneyard.spec.distributed import processes_per_node
from tuneyard.training import contract
from tuneyard.worker.executors import Resources

INHERITED_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "CUDA_VISIBLE_DEVICES",
        "HF_HOME",
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OMP_WAIT_POLICY",  # the operator's, over the runner's own default (tuneyard.child_process)
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        # The operator's W&B settings, for jobs that name a wandb_project (training/reporting.py). The key
        # adds no exposure: wandb reads the same key from ~/.netrc, and HOME is passed on.
        "WANDB_MODE",
        "WANDB_API_KEY",
        "WANDB_BASE_URL",
        "WANDB_ENTITY",
    }
)
"""What a runner may see of its worker's environment. Secrets such as the database URL or API keys
are not on the list: a runner never needs them, and runs code it loaded from user-chosen models."""


def runner_argv(settings: Settings, run_dir: Path, resume: str | None = None, processes: int = 1,
                run_copy: str | None = None) -> list[str]:
    """`python -m tuneyard.training RUN_DIR/spec.json --run-dir RUN_DIR --model-cache-dir D [--nice N]
    [--resume WHAT] [--run-storage URL [--run-storage-endpoint E]]` (`run_copy`: the URL of the run
    folder's copy in run storage); for `processes` > 1, the same runner arguments to
    `python -m tuneyard.training.launch --nproc-per-node P --run-dir RUN_DIR`, which starts that many
    ranks through torchrun.

    The cache folder is passed explicitly so the runner never falls back to reading the environment.
    """
    python = settings.runner_python or sys.executable
    spec = str(run_dir / contract.SPEC_FILE)
    cache = str(settings.resolved_model_cache_dir)
    args = [spec, "--model-cache-dir", cache]
    if settings.runner_nice:
        args += ["--nice", str(settings.runner_nice)]
    if resume is not None:
        args += ["--resume", resume]
    if run_copy is not None:
        args += ["--run-storage", run_copy]
        if settings.run_storage_endpoint:
            args += ["--run-storage-endpoint", settings.run_storage_endpoint]
    if processes > 1:
        return [python, "-m", "tuneyard.training.launch", "--nproc-per-node", str(processes),
                "--run-dir", str(run_dir), *args]
    return [python, "-m", "tuneyard.training", args[0], "--run-dir", str(run_dir), *args[1:]]


def spec_processes(config: Mapping[str, object]) -> int:
    """The processes a job's runner config asks for on this node (`distributed.num_processes`); 1 without."""
    return processes_per_node(config)


def spec_ranks(config: Mapping[str, object]) -> int:
    """The run's processes on all its nodes (`num_processes` x `num_nodes`): the Ray executor's workers."""
    distributed = config.get("distributed")
    nodes = distributed.get("num_nodes", 1) if isinstance(distributed, dict) else 1
    return spec_processes(config) * (nodes if isinstance(nodes, int) and nodes > 0 else 1)


def rank_resources(env: Mapping[str, str], config: Mapping[str, object], memory_bytes: int | None) -> Resources:
    """What each rank asks of the node it is placed on: the threads `env` gives it, a GPU when the
    job's config requires CUDA, and its share of the job's memory need (`memory_bytes`, what admission
    weighed: on CPU one process's estimate times the processes on a node, as each rank holds the whole
    model; on CUDA one process's, a GPU's)."""
    threads = env.get("OMP_NUM_THREADS", "")
    gpus = 1 if config.get(contract.SPEC_DEVICE_FIELD) == "cuda" else 0
    shares = 1 if gpus else processes_per_node(config)
    per_rank = memory_bytes // shares if memory_bytes is not None else None
    return Resources(cpus=int(threads) if threads.isdigit() and int(threads) > 0 else 1, gpus=gpus,
                     memory_bytes=per_rank)


def rank_threads(env: Mapping[str, str], processes: int) -> dict[str, str]:
    """A runner's thread count shared by its `processes` ranks: they compute side by side on the cores
    it was given, and more threads than cores wait on each other at every op."""
    given = env.get("OMP_NUM_THREADS", "")
    if processes <= 1 or not given.isdigit():
        return {}
    threads = str(max(1, int(given) // processes))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def runner_env(inherited: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowed part of `inherited` (the worker passes its own environment), plus `extra`.

    PYTHONUNBUFFERED makes runner.log current, so the tail shown for a crash is the real last words.
    """
    env = {k: v for k, v in inherited.items() if k in INHERITED_VARIABLES or k.startswith("LC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def thread_environment(settings: Settings, inherited: Mapping[str, str], workers: int) -> dict[str, str]:
    """OMP_NUM_THREADS and MKL_NUM_THREADS for a runner of one of `workers` side by side on this host:
    `settings.runner_threads`, else the operator's own OMP_NUM_THREADS (inherited as is), else their
    share of the cores (see Settings.runner_threads for why a share and not all of them)."""
    if settings.runner_threads is None and "OMP_NUM_THREADS" in inherited:
        return {}
    threads = str(settings.runner_threads or cpu_share(workers))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def hub_environment(settings: Settings) -> dict[str, str]:
    """HF_ENDPOINT for the runner when the hub is a setting, so its models come from the hub the API
    fetches datasets from (otherwise the worker's own HF_ENDPOINT, if any, is inherited)."""
    return {"HF_ENDPOINT": settings.hub_endpoint} if settings.hub_endpoint else {}


STORAGE_VARIABLES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CA_BUNDLE",
    }
)
"""The AWS SDK's variables a runner needs to upload to run storage (credentials, region, profile)."""


def storage_environment(settings: Settings, inherited: Mapping[str, str]) -> dict[str, str]:
    """The worker's AWS variables for its runners, only where run storage is set: the runner uploads its
    checkpoints itself, so that it reports only what is durable, and needs the credentials to do it."""
    if settings.run_storage is None:
        return {}
    return {name: value for name, value in inherited.items() if name in STORAGE_VARIABLES}


def judge_environment(settings: Settings) -> dict[str, str]:
    """The evaluation judge's key for the runner's environment (the one way it reaches a runner)."""
    return {contract.JUDGE_KEY_VARIABLE: settings.judge_api_key} if settings.judge_api_key else {}
