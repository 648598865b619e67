"""Start-up costs: a tiny job's runner from process start to exit, phase by phase; `tuneyard --help`;
and `tuneyard serve` from process start to its first answer.

Every job, evaluation and export starts a runner, and the test suite starts hundreds, so what a
runner pays around its steps (interpreter and imports, model and data, exit) is paid again and again.
The runner trains tiny-llama for a few fp32 steps on examples/tiny-chat.jsonl; its phases are read
from the `ts` of its telemetry records (spawn to the first phase, each phase to the next, the first
step apart, and from the last record to the process's exit).

With `--compare-with DIR` (another checkout, say `git archive BASE | tar -x -C DIR`) each measure
runs on both trees in pairs, interleaved A B, B A, ... so that a load that drifts over the run biases
neither side. CPU time (user + system, from getrusage(RUSAGE_CHILDREN)) is given beside wall time:
on a shared host it depends much less on what else runs. Prints medians and spreads; asserts nothing.

    .venv/bin/python -m benchmarks.runner_startup [--reps 3] [--steps 3] [--compare-with DIR]
        [--only runner,cli,serve]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.service_bench import EXAMPLES, free_port, load_average

REPO = Path(__file__).resolve().parents[1]
MEASURES = ("runner", "cli", "serve")
Figures = dict[str, float]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(tree: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), **extra}


def _spec(folder: Path, steps: int) -> Path:
    spec = {"type": "finetune", "base_model": "tiny-llama", "method": "lora",
            "datasets": [{"path": str(EXAMPLES)}],
            "hyperparams": {"max_steps": steps, "batch_size": 4, "max_seq_length": 64, "learning_rate": 1e-3,
                            "bf16": False, "seed": 7}}
    path = folder / "spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def runner(tree: Path, work: Path, spec: Path, cache: Path) -> Figures:
    """One tiny job, spawn to exit: wall, CPU, and each phase's seconds."""
    run_dir = Path(tempfile.mkdtemp(dir=work))
    cpu, start = _children_cpu(), time.time()
    with open(run_dir / "runner.log", "wb") as log:
        code = subprocess.call([sys.executable, "-m", "tuneyard.training", str(spec), "--run-dir", str(run_dir),
                                "--model-cache-dir", str(cache)], stdout=log, stderr=log, env=_env(tree), cwd=work)
    end = time.time()
    figures = {"wall": end - start, "cpu": _children_cpu() - cpu}
    if code != 0:
        raise RuntimeError(f"runner exited {code}: {(run_dir / 'runner.log').read_text()[-2000:]}")
    records = [json.loads(line) for line in (run_dir / "telemetry.jsonl").read_text().splitlines()]
    figures.update(_phases(records, start, end))
    shutil.rmtree(run_dir)
    return figures


def _phases(records: list[dict[str, Any]], start: float, end: float) -> Figures:
    """Seconds from spawn to the first phase (interpreter, imports, spec), in each phase, the first
    training step apart, and from the last record to exit."""
    marks = [(r["ts"], r["phase"]) for r in records if r["kind"] == "phase"]
    first_metric = next((r["ts"] for r in records if r["kind"] == "metric"), None)
    figures = {"start→first phase": marks[0][0] - start}
    for (ts, name), (next_ts, _) in itertools.pairwise(marks):
        if name == "training" and first_metric is not None:
            figures["first step"] = first_metric - ts
            figures["training after step 1"] = next_ts - first_metric
        else:
            figures[name] = next_ts - ts
    figures["done→exit"] = end - records[-1]["ts"]
    return figures


def cli(tree: Path, work: Path, *_: Any) -> Figures:
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "tuneyard.cli.main", "--help"], env=_env(tree), cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    return {"wall": time.perf_counter() - start, "cpu": _children_cpu() - cpu}


def serve(tree: Path, work: Path, _spec: Path, cache: Path) -> Figures:
    """`tuneyard serve` (one embedded worker, a fresh SQLite) from spawn to its first /healthz answer."""
    data = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    env = _env(tree, TUNEYARD_DATA_DIR=str(data), TUNEYARD_MODEL_CACHE_DIR=str(cache))
    cpu, start = _children_cpu(), time.perf_counter()
    with open(data / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tuneyard.cli.main", "serve", "--port", str(port),
                                 "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        up = _first_answer(f"http://127.0.0.1:{port}/healthz", proc, data)
        figures = {"first answer": up - start}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    figures["cpu (start to exit)"] = _children_cpu() - cpu
    shutil.rmtree(data)
    return figures


def _first_answer(url: str, proc: subprocess.Popen[bytes], data: Path, timeout: float = 240) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {(data / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter()
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"serve did not answer in {timeout} s")


def _report(results: dict[str, dict[str, list[Figures]]], trees: dict[str, Path]) -> None:
    for measure, by_tree in results.items():
        print(f"\n{measure}: median (min–max) of {len(next(iter(by_tree.values())))} s")
        names = list(by_tree)
        keys = list(dict.fromkeys(k for runs in by_tree.values() for run in runs for k in run))
        print(f"  {'':24}" + "".join(f"{name + ' ' + trees[name].name:>30}" for name in names))
        for key in keys:
            cells = []
            for name in names:
                values = [run[key] for run in by_tree[name] if key in run]
                cells.append(f"{statistics.median(values):8.2f} ({min(values):6.2f}–{max(values):6.2f})"
                             if values else "")
            print(f"  {key:24}" + "".join(f"{cell:>30}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="the tiny job's optimizer steps")
    parser.add_argument("--compare-with", type=Path, default=None, help="another checkout, measured in turn")
    parser.add_argument("--only", default=",".join(MEASURES), help="which measures, comma-separated")
    args = parser.parse_args()
    trees = {"A": REPO} | ({"B": args.compare_with.resolve()} if args.compare_with else {})
    chosen: dict[str, Callable[..., Figures]] = {
        m: {"runner": runner, "cli": cli, "serve": serve}[m] for m in args.only.split(",")}
    with tempfile.TemporaryDirectory(prefix="runner-startup-") as tmp:
        work = Path(tmp)
        spec, cache = _spec(work, args.steps), work / "models"
        for tree in trees.values():  # builds tiny-llama into the cache, and warms the file cache
            runner(tree, work, spec, cache)
        results: dict[str, dict[str, list[Figures]]] = defaultdict(lambda: defaultdict(list))
        for rep in range(args.reps):
            print(f"rep {rep + 1}/{args.reps}, load {load_average()}", flush=True)
            order = list(trees) if rep % 2 == 0 else list(reversed(trees))
            for measure, fn in chosen.items():
                for name in order:
                    results[measure][name].append(fn(trees[name], work, spec, cache))
    print(f"\nA = {REPO}" + (f", B = {trees['B']}" if "B" in trees else "") + f"; load now {load_average()}")
    _report(results, trees)


if __name__ == "__main__":
    main()
