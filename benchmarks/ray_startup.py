"""What the Ray executor adds to a runner's start-up against the local executor (`benchmarks.distributed
--ray` runs it; also alone: `.venv/bin/python -m benchmarks.ray_startup [--reps 5]`).

One figure per start: from `Executor.start(launch)` to the first line of the runner's telemetry, read
through the handle as the supervisor reads it; the runner is then killed and released (its training is
not what is measured). The launch is built as a worker builds it (`worker/command.py`: argv, filtered
environment, threads shared by the ranks, the rank's resources). One process and two ranks (torchrun
locally, Ray Train on Ray), local and Ray alternated so that a drifting load biases neither. The Ray
cluster's own start-up (`ray start --head` until its runtime is up) and the worker's connection to it
(`ray.init`) are paid once, not per job, and are reported apart. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.service_bench import BENCH_HYPERPARAMS, EXAMPLES, MODEL_CACHE, load_average
from tests.support.ray_cluster import local_ray_cluster
from tuneyard.settings import Settings
from tuneyard.worker.command import rank_resources, rank_threads, runner_argv, runner_env
from tuneyard.worker.executors import Executor, Launch
from tuneyard.worker.executors.local import LocalExecutor

POLL_SECONDS = 0.02
THREADS = 2


def launch(root: Path, name: str, processes: int) -> Launch:
    """A tiny-llama LoRA job's first attempt in `root/name`, on `processes` ranks, as a worker launches it."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    hyper = {**BENCH_HYPERPARAMS, "max_steps": 50}
    job: dict[str, Any] = {"type": "finetune", "base_model": "tiny-llama", "method": "lora",
                           "datasets": [{"path": str(EXAMPLES)}], "hyperparams": hyper}
    if processes > 1:
        job["distributed"] = {"strategy": "ddp", "num_processes": processes}
    (run_dir / "spec.json").write_text(json.dumps(job), encoding="utf-8")
    settings = Settings(data_dir=root, model_cache_dir=MODEL_CACHE, runner_nice=0)
    threads = {"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    env = runner_env(os.environ, {**threads, **rank_threads(threads, processes)})
    argv = runner_argv(settings, run_dir, processes=processes)
    return Launch(name, [*argv, "--exit-with-parent"], run_dir, env, ranks=processes,
                  rank_argv=[*runner_argv(settings, run_dir), "--exit-with-parent"],
                  resources=rank_resources(env, job, None))


def first_line_seconds(executor: Executor, job: Launch) -> float:
    """Seconds from start() to the runner's first telemetry bytes; the runner is then ended."""
    began = time.monotonic()
    process = executor.start(job)
    try:
        while not process.read_telemetry(0, 1):
            if process.exited() is not None:
                raise RuntimeError(f"{job.job_id} ended first: {process.log_tail(20)}")
            time.sleep(POLL_SECONDS)
        return time.monotonic() - began
    finally:
        process.kill()
        process.release()


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="starts a side")
    parser.add_argument("--cpus", type=int, default=2, help="the local cluster's CPUs")
    args = parser.parse_args(argv)
    figures: dict[str, list[float]] = {}
    cluster: list[float] = []
    print(f"before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tuneyard-bench-ray-") as tmp, \
            local_ray_cluster(args.cpus, started=cluster) as address:
        from tuneyard.worker.executors.ray_cluster import RayExecutor

        began = time.monotonic()
        executors: dict[str, Executor] = {"local": LocalExecutor(), "ray": RayExecutor(address)}
        connect = time.monotonic() - began
        for rep in range(args.reps):
            for processes in (1, 2):
                order = ("local", "ray") if rep % 2 == 0 else ("ray", "local")
                for name in order:
                    side = f"{name} {processes}p"
                    job = launch(Path(tmp), f"{name}-{processes}p-{rep}", processes)
                    seconds = first_line_seconds(executors[name], job)
                    figures.setdefault(side, []).append(seconds)
                    print(f"  rep {rep} {side}: {seconds:.2f} s to the first telemetry line", flush=True)
    print(f"\nRay cluster start-up (ray start --head, {args.cpus} CPUs): {cluster[0]:.1f} s; "
          f"worker's connection (ray.init): {connect:.1f} s; paid once, not per job")
    print(f"{'side':<10} {'median s':>9} {'min':>6} {'max':>6} {'added by Ray':>13}")
    for side, seconds in figures.items():
        local = statistics.median(figures[side.replace("ray", "local")])
        added = f"{statistics.median(seconds) - local:+.2f} s" if side.startswith("ray") else ""
        print(f"{side:<10} {statistics.median(seconds):>9.2f} {min(seconds):>6.2f} {max(seconds):>6.2f} {added:>13}")
    print(f"after: {load_average()}")
    return figures


if __name__ == "__main__":
    main()
