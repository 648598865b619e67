"""A real `tuneyard serve` (or `tuneyard worker`) in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support.runs import REPO
from tuneyard.client import TuneyardClient, find_api_key

# Short leases so that a dead worker's job comes back within seconds, not half a minute.
FAST_ENV = {
    "TUNEYARD_LEASE_SECONDS": "4",
    "TUNEYARD_HEARTBEAT_SECONDS": "1",
    "TUNEYARD_POLL_SECONDS": "0.2",
    "TUNEYARD_TELEMETRY_SECONDS": "0.2",  # the tests watch progress step by step
    "TUNEYARD_STOP_GRACE_SECONDS": "60",
    "TUNEYARD_CANCEL_GRACE_SECONDS": "5",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    data_dir: Path
    database_url: str
    model_cache: Path
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    clients: list[TuneyardClient] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **FAST_ENV, "PYTHONPATH": str(REPO), "TUNEYARD_DATA_DIR": str(self.data_dir),
                "TUNEYARD_DATABASE_URL": self.database_url, "TUNEYARD_MODEL_CACHE_DIR": str(self.model_cache),
                **extra}

    def _spawn(self, args: list[str], log_name: str, own_group: bool = False, **extra: str) -> subprocess.Popen[bytes]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / log_name, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "tuneyard.cli.main", *args], stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env(**extra), start_new_session=own_group)
        self.procs.append(proc)
        return proc

    def start_serve(self, workers: int = 1, own_group: bool = False, **extra: str) -> subprocess.Popen[bytes]:
        """`own_group`: in a process group of its own, so a test can kill serve's whole group (not
        its runners: each runner has a group of its own) without killing itself; `extra`: settings."""
        proc = self._spawn(["serve", "--port", str(self.port), "--workers", str(workers)], "serve.log", own_group,
                           **extra)
        # Start-up runs every migration: on a 2-core host under a load average of 20 that alone
        # took over a minute, so the wait is long; a serve that dies fails at once either way.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, self.log("serve.log")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(self.log("serve.log"))

    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        return self._spawn(["worker", "--workers", "1"], "worker.log", **extra)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> TuneyardClient:
        client = TuneyardClient(self.url, find_api_key(self.data_dir))
        self.clients.append(client)
        return client

    def log(self, name: str) -> str:
        path = self.data_dir / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop_all(self) -> None:
        for client in self.clients:
            client.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def runner_pids(run_dir: Path) -> list[int]:
    """Live runner processes working in `run_dir`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd: Any = proc.info.get("cmdline") or []
        if "tuneyard.training" in cmd and str(run_dir) in cmd:
            found.append(proc.pid)
    return found


def wait_until(predicate: Any, timeout: float = 180, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")
