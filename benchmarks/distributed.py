"""Data-parallel throughput: one spec trained on 1 process (A) and on 2 ranks (B) at the same global batch.

Each run is started exactly as a worker starts it: the spec as RUN_DIR/spec.json, the argv and filtered
environment of tuneyard.worker.command (`python -m tuneyard.training` for one process,
`python -m tuneyard.training.launch --nproc-per-node 2` for two), the runner's threads shared by the
ranks as the local executor shares them (`rank_threads`). Runs alternate A B, B A, ... so that a load
that drifts over the benchmark biases neither side. Tokens/s come from each run's telemetry: the step's
tokens (summed over ranks by rank 0) over the runner's own `elapsed_s`, after WARMUP steps.

On CPU the ranks use gloo and split the host's cores between them (2 ranks of T/2 threads against 1
process of T threads), so the figure says what data parallelism buys or costs on one CPU host. Where
CUDA is available a second pass runs the same on GPUs with nccl: 1 GPU against `--gpus` (default
every GPU torch sees, when there are at least two; NCCL puts each rank on its own device). Prints
medians and spreads and the load average before and after; asserts nothing.

With `--ray` (or `--ray-only`, without the throughput passes) it also measures what the Ray executor
adds to a runner's start-up against the local executor, on a local Ray cluster it starts and stops
(`benchmarks/ray_startup.py`, `--reps` starts a side).

    .venv/bin/python -m benchmarks.distributed [--reps 3] [--steps 30] [--warmup 5] [--batch-size 8]
        [--max-seq-length 64] [--threads T] [--model tiny-llama] [--method lora|full] [--quick] [--no-gpu]
        [--ray | --ray-only]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.service_bench import BENCH_HYPERPARAMS, EXAMPLES, MODEL_CACHE, load_average, train_steps
from tuneyard.settings import Settings
from tuneyard.worker.command import rank_threads, runner_argv, runner_env

HIDE_GPUS = {"CUDA_VISIBLE_DEVICES": ""}
"""A CPU pass on a GPU host: the runner picks cuda wherever torch sees one."""


@dataclass(frozen=True)
class Side:
    device: str  # cpu | cuda
    processes: int


@dataclass
class Figures:
    tokens_per_s: dict[Side, list[float]] = field(default_factory=dict)
    memory_gb: dict[Side, list[float]] = field(default_factory=dict)
    """Rank 0's peak at its last step: resident memory on CPU, allocated CUDA memory on a GPU."""
    load: list[str] = field(default_factory=list)


def spec(args: argparse.Namespace, processes: int) -> dict[str, Any]:
    """The job both sides run: the same global batch (`batch_size` examples a step) whatever the ranks."""
    hyper = {**BENCH_HYPERPARAMS, "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
             "max_steps": args.steps, "save_steps": args.steps * 10}  # no checkpoint inside the measured steps
    job: dict[str, Any] = {"type": "finetune", "base_model": args.model, "method": args.method,
                           "datasets": [{"path": str(args.data)}], "hyperparams": hyper}
    if processes > 1:
        job["distributed"] = {"strategy": "ddp", "num_processes": processes}
    return job


def run_once(job: dict[str, Any], run_dir: Path, side: Side, threads: int, warmup: int) -> tuple[float, float]:
    """Train `job` in `run_dir` as a worker would; its tokens per training second after `warmup` steps,
    and rank 0's memory (GB) at the last step."""
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(job, indent=2), encoding="utf-8")
    settings = Settings(data_dir=run_dir.parent, model_cache_dir=MODEL_CACHE, runner_nice=0)
    extra = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    extra.update(rank_threads(extra, side.processes))
    if side.device == "cpu":
        extra.update(HIDE_GPUS)
    env = runner_env(os.environ, extra)
    with open(run_dir / "runner.log", "wb") as log:
        code = subprocess.run(runner_argv(settings, run_dir, processes=side.processes), env=env, stdout=log,
                              stderr=subprocess.STDOUT, check=False, timeout=3600).returncode
    if code != 0:
        raise RuntimeError(f"{side} exited {code}: {(run_dir / 'runner.log').read_text()[-2000:]}")
    kept = [r for r in train_steps(run_dir) if int(r["step"]) >= warmup]
    if len(kept) < 2:
        raise RuntimeError("too few steps to measure: raise --steps")
    tokens = int(kept[-1]["tokens"]) - int(kept[0]["tokens"])
    seconds = float(kept[-1]["elapsed_s"]) - float(kept[0]["elapsed_s"])
    return tokens / max(seconds, 1e-9), float(kept[-1]["memory_gb"])


def measure(sides: tuple[Side, ...], args: argparse.Namespace, root: Path, figures: Figures) -> None:
    """`args.reps` pairs, alternating which side goes first."""
    for rep in range(args.reps):
        figures.load.append(load_average())
        order = sides if rep % 2 == 0 else sides[::-1]
        for side in order:
            job = spec(args, side.processes)
            run_dir = root / f"{side.device}-{side.processes}p-{rep}"
            rate, memory = run_once(job, run_dir, side, args.threads, args.warmup)
            figures.tokens_per_s.setdefault(side, []).append(rate)
            figures.memory_gb.setdefault(side, []).append(memory)
            if not args.quiet:
                print(f"  rep {rep} {side.device} {side.processes} process(es): {rate:,.0f} tokens/s", flush=True)


def gpu_sides(requested: int | None) -> tuple[Side, ...] | None:
    """1 GPU against N (nccl needs a device a rank); 1 GPU alone where there is one; None without CUDA."""
    import torch  # here, not at the top: the CPU pass needs no torch in this process

    if not torch.cuda.is_available():
        return None
    gpus = requested or torch.cuda.device_count()
    if gpus < 2 or gpus > torch.cuda.device_count():
        print(f"GPU: {torch.cuda.device_count()} device(s) seen, {gpus} asked; 1 vs N needs N >= 2 devices: "
              "measuring 1 GPU alone")
        return (Side("cuda", 1),)
    return Side("cuda", 1), Side("cuda", gpus)


def report(figures: Figures, args: argparse.Namespace) -> None:
    print(f"\n{args.model} {args.method}, global batch {args.batch_size} examples, "
          f"max_seq_length {args.max_seq_length}, {args.steps} steps ({args.warmup} warm-up), {args.reps} rep(s) "
          f"a side, {args.threads} thread(s) a run shared by its ranks")
    print(f"{'device':<7} {'procs':>5} {'median tok/s':>13} {'min':>9} {'max':>9} {'vs 1':>6} {'rank 0 GB':>10}")
    base: dict[str, float] = {}
    for side, rates in figures.tokens_per_s.items():
        median = statistics.median(rates)
        base.setdefault(side.device, median)
        print(f"{side.device:<7} {side.processes:>5} {median:>13,.0f} {min(rates):>9,.0f} {max(rates):>9,.0f}"
              f" {median / base[side.device]:>5.2f}x {max(figures.memory_gb[side]):>10.3f}")
    for line in figures.load:
        print(f"before a rep: {line}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8, help="examples a step, the global batch")
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of a run, divided among its ranks")
    parser.add_argument("--model", default="tiny-llama", help="a built-in base model (tuneyard base-models list)")
    parser.add_argument("--method", default="lora", choices=("lora", "full"),
                        help="full: every weight's gradient crosses between the ranks at each step")
    parser.add_argument("--data", type=Path, default=EXAMPLES)
    parser.add_argument("--gpus", type=int, default=None, help="ranks of the GPU pass (default: every GPU)")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU pass even where CUDA is available")
    parser.add_argument("--quick", action="store_true", help="one rep of 4 steps: proves it runs, measures nothing")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--ray", action="store_true", help="also the Ray executor's added start-up seconds")
    parser.add_argument("--ray-only", action="store_true", help="the Ray start-up pass alone")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.steps, args.warmup = 1, 4, 1
    return args


def main(argv: list[str] | None = None) -> Figures:
    args = parse(argv)
    figures = Figures()
    started = time.monotonic()
    print(f"before: {load_average()}", flush=True)
    if not args.ray_only:
        with tempfile.TemporaryDirectory(prefix="tuneyard-bench-ddp-") as tmp:
            measure((Side("cpu", 1), Side("cpu", 2)), args, Path(tmp), figures)
            gpu = None if args.no_gpu else gpu_sides(args.gpus)
            if gpu is not None:
                measure(gpu, args, Path(tmp), figures)
        report(figures, args)
    if args.ray or args.ray_only:
        from benchmarks.ray_startup import main as ray_startup  # Ray is imported only for this pass

        ray_startup(["--reps", str(args.reps)])
    print(f"after: {load_average()}; {time.monotonic() - started:.0f} s in all")
    return figures


if __name__ == "__main__":
    main()
