"""The runner's command line and environment, built from Settings and what the caller passes in."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from tuneyard.scheduler.capacity import cpu_share
from tuneyard.settings import Settings
from tuneyard.training import contract

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


def runner_argv(settings: Settings, run_dir: Path, resume: str | None = None) -> list[str]:
    """`python -m tuneyard.training RUN_DIR/spec.json --run-dir RUN_DIR --model-cache-dir D [--nice N]
    [--resume WHAT]`.

    The cache folder is passed explicitly so the runner never falls back to reading the environment.
    """
    python = settings.runner_python or sys.executable
    spec = str(run_dir / contract.SPEC_FILE)
    cache = str(settings.resolved_model_cache_dir)
    argv = [python, "-m", "tuneyard.training", spec, "--run-dir", str(run_dir), "--model-cache-dir", cache]
    if settings.runner_nice:
        argv += ["--nice", str(settings.runner_nice)]
    if resume is not None:
        argv += ["--resume", resume]
    return argv


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


def judge_environment(settings: Settings) -> dict[str, str]:
    """The evaluation judge's key for the runner's environment (the one way it reaches a runner)."""
    return {contract.JUDGE_KEY_VARIABLE: settings.judge_api_key} if settings.judge_api_key else {}
