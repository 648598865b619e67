"""Run the training runner from tests: specs, datasets, subprocesses and their outputs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

# Tiny, fast, and fp32 on the CPU so two runs can be compared bit for bit.
EXACT_HYPERPARAMS: dict[str, Any] = {
    "max_steps": 12,
    "batch_size": 4,
    "max_seq_length": 64,
    "learning_rate": 1.0e-3,
    "bf16": False,
    "seed": 7,
}


def arithmetic_chat(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """Chat examples of varied lengths that a tiny model can learn something from."""
    records = []
    for i in range(offset, offset + n):
        a, b = i % 13 + 1, (i * 7) % 11 + 2
        question = f"What is {a} plus {b}?" + (" Show the sum." if i % 3 == 0 else "")
        answer = f"{a} plus {b} is {a + b}." + (" That is the answer." * (i % 4))
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if i % 5 == 0:
            messages.insert(0, {"role": "system", "content": "You add numbers."})
        records.append({"messages": messages})
    return records


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_spec(folder: Path, data: Path, method: str = "lora", processes: int | None = None,
               strategy: str = "ddp", **hyperparams: Any) -> Path:
    """A finetune spec in `folder`; with `processes`, data-parallel on that many by `strategy`
    (job-ddpN.yaml, job-fsdpN.yaml)."""
    spec: dict[str, Any] = {
        "type": "finetune",
        "base_model": "tiny-llama",
        "datasets": [{"path": str(data)}],
        "method": method,
        "hyperparams": {**EXACT_HYPERPARAMS, **hyperparams},
    }
    if processes is not None:
        spec["distributed"] = {"strategy": strategy, "num_processes": processes}
    path = folder / ("job.yaml" if processes is None else f"job-{strategy}{processes}.yaml")
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def runner_argv(spec: Path, run_dir: Path, cache: Path, resume: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "tuneyard.training", str(spec), "--run-dir", str(run_dir),
            "--model-cache-dir", str(cache)]
    return argv + (["--resume", resume] if resume else [])


def launcher_argv(spec: Path, run_dir: Path, cache: Path, processes: int, resume: str | None = None) -> list[str]:
    """The runner on `processes` ranks, through torchrun (tuneyard.training.launch), as a worker starts it."""
    argv = [sys.executable, "-m", "tuneyard.training.launch", "--nproc-per-node", str(processes),
            "--run-dir", str(run_dir), str(spec), "--model-cache-dir", str(cache)]
    return argv + (["--resume", resume] if resume else [])


def start_runner(spec: Path, run_dir: Path, cache: Path, resume: str | None = None, processes: int = 1,
                 threads: int | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The runner in a session of its own, its output in RUN_DIR/runner.log; on `processes` ranks through
    the launcher where more than one; with `threads` as OMP_NUM_THREADS (per rank) where given; `env`
    adds to this process's environment."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    argv = (launcher_argv(spec, run_dir, cache, processes, resume) if processes > 1
            else runner_argv(spec, run_dir, cache, resume))
    with open(run_dir / "runner.log", "ab") as log:  # the child keeps its own copy of the handle
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
    _started.append(proc)
    return proc


_started: list[subprocess.Popen[bytes]] = []


def reap_started_runners() -> None:
    """Kill the groups of runners a test started and left running (it failed before it waited) and reap
    them, so they neither train on beside the next tests nor surface as a ResourceWarning in one of them."""
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_runner(spec: Path, run_dir: Path, cache: Path, resume: str | None = None, timeout: float = 300,
               processes: int = 1, threads: int | None = None) -> int:
    proc = start_runner(spec, run_dir, cache, resume, processes, threads)
    return proc.wait(timeout=timeout)


def telemetry(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "telemetry.jsonl"
    if not path.exists():
        return []
    # Only complete lines: read while the runner writes, the last one may have landed in part (a write
    # crossing a page boundary becomes visible page by page), as the service's own reader allows.
    *complete, _partial = path.read_text(encoding="utf-8", errors="replace").split("\n")
    return [json.loads(line) for line in complete if line.strip()]


def step_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in telemetry(run_dir) if r["kind"] == "metric"}


def wait_for(predicate: Any, timeout: float = 120, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def stop_after_step(proc: subprocess.Popen[bytes], run_dir: Path, step: int) -> int:
    """SIGTERM the runner once it reports `step`; return its exit code."""
    wait_for(lambda: proc.poll() is not None or max(step_losses(run_dir), default=0) >= step)
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(timeout=120)


def final_tensors(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    final = run_dir / "final"
    name = "adapter_model.safetensors" if (final / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(final / name)
