"""Supervision overhead: one spec's step time trained through `tuneyard serve` (A) against the bare
runner, `python -m tuneyard.training` as `tuneyard train` runs it (B).

Both get the same resolved spec (the job's config as the worker writes it), the same argv and the
same filtered environment (tuneyard.worker.command), the same data and hyperparameters. Runs are
interleaved A B, B A, A B… (each pair swaps its order so that a load that drifts over the run biases
neither side), and the service is started for each A run and stopped after it, so B trains with
nothing of tuneyard's around. The per-step time comes from each run's telemetry: the runner's own
`elapsed_s` (training seconds only), differenced step by step after WARMUP steps.

The service's own CPU time while it supervises a run is reported too: unlike step times it hardly
depends on what else the machine is doing, and on a machine without spare cores it bounds what
supervision can take from training. Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.supervision_overhead [--reps 3] [--steps 60] [--warmup 5]
        [--model tiny-llama] [--batch-size 4] [--max-seq-length 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.service_bench import (
    MODEL_CACHE,
    Served,
    StepTimes,
    job_spec,
    load_average,
    make_dataset,
    step_times,
    train_steps,
)
from tuneyard.settings import Settings
from tuneyard.worker.command import runner_argv, runner_env

TARGET_PCT = 2.0


@dataclass(frozen=True)
class Run:
    mode: str  # service | bare
    times: StepTimes
    wall_s: float  # from start to the last step (service: submit to completed)
    runner_cpu_s: float  # CPU the runner used, start to exit
    service_cpu_s: float | None = None  # CPU the serve process itself used (not its runner)


@dataclass(frozen=True)
class Result:
    runs: list[Run]
    load: list[str]  # load average before each repetition

    def of(self, mode: str) -> list[Run]:
        return [r for r in self.runs if r.mode == mode]

    def pair_overheads(self, attr: str = "mean_s") -> list[float]:
        """Per repetition: service over bare, in percent."""
        return [100 * (getattr(a.times, attr) / getattr(b.times, attr) - 1)
                for a, b in zip(self.of("service"), self.of("bare"), strict=True)]

    def overhead_pct(self, attr: str = "mean_s") -> float:
        service = statistics.mean(getattr(r.times, attr) for r in self.of("service"))
        bare = statistics.mean(getattr(r.times, attr) for r in self.of("bare"))
        return 100 * (service / bare - 1)


def run_service(served: Served, dataset_id: str, spec: dict[str, Any], warmup: int) -> tuple[Run, dict[str, Any]]:
    if not served.running:
        served.start()
    try:
        assert served.proc is not None
        proc = psutil.Process(served.proc.pid)
        with served.client() as client:
            started = time.monotonic()
            job = client.create_job(spec)
            own_before, children_before = _cpu(proc)
            # Watch the run folder, not the API: requests would be serve's CPU, counted as supervision.
            wait_for_verdict(served.data_dir / "runs" / job["id"])
            done = client.wait(job["id"], timeout=600, poll=0.2)
            own_after, children_after = _cpu(proc)  # the runner has exited and been waited for
            wall = time.monotonic() - started
        if done["status"] != "completed":
            raise RuntimeError(f"job {job['id']} ended {done['status']}: {done.get('error')}")
        records = train_steps(served.data_dir / "runs" / job["id"])
    finally:
        served.stop()
    times = step_times(records, warmup)
    if times is None:
        raise RuntimeError("too few steps to measure: raise --steps")
    # The runner's own spec.json, as the worker handed it over: the API shows clients upload names in
    # place of the server's paths, which a bare runner could not open.
    config = json.loads((served.data_dir / "runs" / job["id"] / "spec.json").read_text(encoding="utf-8"))
    return Run("service", times, wall, children_after - children_before, own_after - own_before), config


def wait_for_verdict(run_dir: Path, timeout: float = 3600.0) -> None:
    """Until the runner has written its result or error record (its last words before exiting)."""
    path, deadline = run_dir / "telemetry.jsonl", time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if any(_kind(line) in ("result", "error") for line in lines):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no verdict in {run_dir} after {timeout} s")


def _kind(line: str) -> object:
    try:
        return json.loads(line).get("kind")
    except (ValueError, AttributeError):
        return None  # half-written, or not a record


def run_bare(config: dict[str, Any], run_dir: Path, warmup: int) -> Run:
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    settings = Settings(data_dir=run_dir.parent, model_cache_dir=MODEL_CACHE)
    started, children_before = time.monotonic(), _children_cpu()
    with open(run_dir / "runner.log", "wb") as log:
        code = subprocess.run(runner_argv(settings, run_dir), env=runner_env(os.environ), stdout=log,
                              stderr=subprocess.STDOUT, check=False).returncode
    wall, runner_cpu = time.monotonic() - started, _children_cpu() - children_before
    if code != 0:
        raise RuntimeError(f"bare runner exited {code}: {(run_dir / 'runner.log').read_text()[-2000:]}")
    times = step_times(train_steps(run_dir), warmup)
    if times is None:
        raise RuntimeError("too few steps to measure: raise --steps")
    return Run("bare", times, wall, runner_cpu)


def _cpu(proc: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the process itself and of its exited children (its runners)."""
    times = proc.cpu_times()
    return float(times.user + times.system), float(times.children_user + times.children_system)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(reps: int = 3, steps: int = 60, warmup: int = 5, model: str = "tiny-llama",
        hyperparams: dict[str, Any] | None = None) -> Result:
    runs: list[Run] = []
    load: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tuneyard-supervision-") as tmp:
        served = Served(Path(tmp) / "data")
        served.start()  # left running for the first A run, which saves a start
        try:
            with served.client() as client:
                dataset_id = make_dataset(client)
            spec = job_spec(dataset_id, model, max_steps=steps, **(hyperparams or {}))
            config: dict[str, Any] | None = None
            for rep in range(reps):
                load.append(load_average())
                # The bare run needs the service's resolved config, so the very first run is A.
                order = ("service", "bare") if rep % 2 == 0 or config is None else ("bare", "service")
                for mode in order:
                    if mode == "service":
                        result, config = run_service(served, dataset_id, spec, warmup)
                    else:
                        assert config is not None
                        result = run_bare(config, Path(tmp) / "bare" / f"run-{rep}", warmup)
                    runs.append(result)
                    print(f"  rep {rep + 1} {mode:<8} {1000 * result.times.mean_s:8.1f} ms/step mean, "
                          f"{1000 * result.times.median_s:8.1f} median ({result.times.steps} steps)", flush=True)
        finally:
            served.stop()
    return Result(runs, load)


def report(result: Result, label: str) -> None:
    print(f"\n{label}")
    for line in result.load:
        print(f"  {line}")
    print(f"{'mode':<9}{'runs':>5}{'mean ms/step':>14}{'median ms/step':>16}{'wall ms/step':>14}{'spread':>10}")
    for mode in ("service", "bare"):
        runs = result.of(mode)
        means = [1000 * r.times.mean_s for r in runs]
        spread = 100 * (max(means) - min(means)) / statistics.mean(means)
        print(f"{mode:<9}{len(runs):>5}{statistics.mean(means):>14.1f}"
              f"{statistics.mean(1000 * r.times.median_s for r in runs):>16.1f}"
              f"{statistics.mean(1000 * r.times.wall_mean_s for r in runs):>14.1f}{spread:>9.1f}%")
    pairs = result.pair_overheads()
    print(f"overhead (service vs bare, mean step time): {result.overhead_pct():+.2f} %  "
          f"(median step time: {result.overhead_pct('median_s'):+.2f} %)")
    print("per repetition: " + ", ".join(f"{p:+.2f} %" for p in pairs)
          + (f"  (stdev {statistics.stdev(pairs):.2f} points)" if len(pairs) > 1 else ""))
    for mode in ("service", "bare"):
        cpu = [r.runner_cpu_s for r in result.of(mode)]
        print(f"runner CPU, {mode:<8}: {statistics.mean(cpu):.1f} s a run (" + ", ".join(f"{c:.1f}" for c in cpu) + ")")
    for r in result.of("service"):
        if r.service_cpu_s is not None:
            print(f"serve's own CPU while supervising: {r.service_cpu_s:.2f} s = "
                  f"{100 * r.service_cpu_s / max(r.runner_cpu_s, 1e-9):.2f} % of its runner's CPU "
                  f"({100 * r.service_cpu_s / r.wall_s:.2f} % of one core over {r.wall_s:.0f} s)")
    verdict = "met" if result.overhead_pct() < TARGET_PCT else "NOT met"
    noise = max(abs(p - result.overhead_pct()) for p in pairs)
    print(f"target < {TARGET_PCT:.0f} % overhead: {verdict}"
          + (" (but the repetitions scatter more than the target: noisy machine)" if noise > TARGET_PCT else ""))


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="service/bare pairs")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--model", default="tiny-llama", help="a built-in base model, e.g. smollm2-135m-instruct")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-seq-length", type=int, default=None)
    args = parser.parse_args(argv)
    hyperparams = {k: v for k, v in (("batch_size", args.batch_size), ("max_seq_length", args.max_seq_length))
                   if v is not None}
    print(f"{args.model}: {args.reps} × (service, bare), {args.steps} steps each, first {args.warmup} left out")
    result = run(args.reps, args.steps, args.warmup, args.model, hyperparams)
    report(result, f"{args.model}, {args.steps} steps, {args.reps} repetitions")
    return result


if __name__ == "__main__":
    main()
