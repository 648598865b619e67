"""What the service benchmarks share: a real `tuneyard serve`, a dataset on it, and per-step figures
read back from a run's telemetry.jsonl.

The service runs with the production defaults (leases, heartbeats, polling), not the short ones
the end-to-end tests use: a benchmark should measure what a user would run.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tuneyard.client import TuneyardClient, find_api_key

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "tiny-chat.jsonl"
MODEL_CACHE = REPO / ".cache" / "models"

# Small steps (well under a second each on an idle core pair) so that a window of a few seconds
# holds enough of them to average; fp32 so that runs are comparable whatever the CPU offers.
BENCH_HYPERPARAMS: dict[str, Any] = {"batch_size": 4, "max_seq_length": 64, "learning_rate": 1e-3,
                                     "bf16": False, "seed": 3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """One `tuneyard serve` subprocess on a free port; its output goes to DATA_DIR/serve.log."""

    data_dir: Path
    database_url: str | None = None
    model_cache: Path = MODEL_CACHE
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO), "TUNEYARD_DATA_DIR": str(self.data_dir),
               "TUNEYARD_MODEL_CACHE_DIR": str(self.model_cache)}
        if self.database_url:
            env["TUNEYARD_DATABASE_URL"] = self.database_url
        with open(self.data_dir / "serve.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tuneyard.cli.main", "serve", "--port", str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tuneyard serve exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"tuneyard serve did not answer in {timeout} s: {self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> TuneyardClient:
        return TuneyardClient(self.url, find_api_key(self.data_dir))

    def api_key(self) -> str:
        return find_api_key(self.data_dir)

    def log_tail(self) -> str:
        path = self.data_dir / "serve.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # drains: a running job is handed back, not lost
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_dataset(client: TuneyardClient, data: Path = EXAMPLES) -> str:
    file = client.upload_file(data)
    dataset = client.wait_dataset(client.create_dataset(f"bench-{file['id']}", [file["id"]])["id"])
    if dataset["status"] != "ready":
        raise RuntimeError(f"dataset not ready: {dataset}")
    return str(dataset["id"])


def job_spec(dataset_id: str, model: str = "tiny-llama", **hyperparams: Any) -> dict[str, Any]:
    return {"base_model": model, "method": "lora", "datasets": [{"id": dataset_id}],
            "hyperparams": {**BENCH_HYPERPARAMS, **hyperparams}}


def train_steps(run_dir: Path) -> list[dict[str, Any]]:
    """The runner's `metric` records (one per optimizer step), in step order.

    Lines a crashed writer left half-written are skipped, as the supervisor would.
    """
    path = run_dir / "telemetry.jsonl"
    records = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "metric" and record.get("phase", "train") == "train":
            records.append(record)
    return sorted(records, key=lambda r: int(r["step"]))


@dataclass(frozen=True)
class StepTimes:
    steps: int  # steps measured (after the warm-up)
    mean_s: float  # training seconds per step, from the runner's own elapsed_s
    median_s: float
    wall_mean_s: float  # wall seconds per step between metric records: adds telemetry, checkpoints


def step_times(records: list[dict[str, Any]], warmup: int) -> StepTimes | None:
    """Per-step time after the first `warmup` steps, or None with too few steps to say."""
    kept = [r for r in records if int(r["step"]) >= warmup]
    if len(kept) < 2:
        return None
    # elapsed_s is cumulative over the steps alone, so consecutive differences are step times.
    deltas = [float(b["elapsed_s"]) - float(a["elapsed_s"]) for a, b in itertools.pairwise(kept)]
    span = int(kept[-1]["step"]) - int(kept[0]["step"])
    wall = (float(kept[-1]["ts"]) - float(kept[0]["ts"])) / span
    return StepTimes(len(deltas), sum(deltas) / len(deltas), statistics.median(deltas), wall)


def tokens_per_s(records: list[dict[str, Any]], start: float, end: float) -> tuple[float, int] | None:
    """Training tokens per training second over the steps that ended in [start, end] (wall clock),
    and how many steps that was; None when fewer than two steps fall in the window."""
    inside = [(a, b) for a, b in itertools.pairwise(records) if start <= float(b["ts"]) <= end]
    if len(inside) < 2:
        return None
    tokens = sum(int(b["tokens"]) - int(a["tokens"]) for a, b in inside)
    seconds = sum(float(b["elapsed_s"]) - float(a["elapsed_s"]) for a, b in inside)
    return tokens / max(seconds, 1e-9), len(inside)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 is a latency some request really had)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


def percentile_cells(seconds: list[float]) -> str:
    """p50, p90, p99 and max in ms, as the latency tables' last four columns."""
    return "".join(f"{1000 * percentile(seconds, q):>9.1f}" for q in (50, 90, 99, 100))
