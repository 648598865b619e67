"""A local Ray cluster for tests and benchmarks: `ray start --head` in a session of its own.

Stopped by signalling that session's process group (its GCS, raylet and workers are in it): `ray stop`
would stop every Ray cluster on the host, another engineer's or test run's too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.runs import REPO, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def local_ray_cluster(cpus: int = 2, started: list[float] | None = None) -> Iterator[str]:
    """A head node with `cpus` CPUs whose workers import this checkout; yields its address (host:port).
    `started`, when given, gets the seconds `ray start` took until the runtime was up."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths must stay short
    log_path = temp / "ray-start.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--num-cpus", str(cpus),
            "--include-dashboard=false", "--dashboard-port", str(free_port()), "--port", str(port),
            "--temp-dir", str(temp), "--block"]
    began = time.monotonic()
    with open(log_path, "wb") as log:
        head = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: head.poll() is not None or b"Ray runtime started" in log_path.read_bytes(), timeout=120,
                 interval=0.02)
        assert head.poll() is None, log_path.read_text()
        if started is not None:
            started.append(time.monotonic() - began)
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()  # this process's connection, if it made one
        for sig in (signal.SIGTERM, signal.SIGKILL):  # `ray start --block` may outlive a SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                head.wait(timeout=5)
