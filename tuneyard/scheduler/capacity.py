"""What a worker declares it can hold: the memory a job may use and the device it trains on.

Declared once, at registration, and read by admission: a claim passes over a job whose memory
estimate is larger (`lifecycle.claim`), and a submission no live worker could hold is refused
(`services/admission_memory.py`). Set by `Settings.worker_memory_bytes` (`--worker-memory-gb`);
otherwise measured here without importing torch (the worker process never does): the first GPU's
total memory from `nvidia-smi` where there is one, since the runner trains on cuda:0 and nothing
else should share it, else the host's MemAvailable, which is what a new process can still get
without swapping, not the installed total that other processes already use.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tuneyard.planning.memory import Device

MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Capacity:
    memory_bytes: int | None
    """None when it could be neither measured nor was it set: the worker then takes any job."""
    device: Device
    source: str  # where the figure came from, for the worker's start-up line


def declared_capacity(memory_bytes: int | None, workers: int = 1) -> Capacity:
    """`memory_bytes` (each worker's) when the operator set it, on the device found; else what the
    host has, shared evenly by the `workers` of one process, whose jobs run side by side."""
    gpu = gpu_memory_bytes()
    device = _device(gpu)
    workers = max(workers, 1)  # `serve --workers 0` makes a pool of none, which measures all the same
    if memory_bytes is not None:
        return Capacity(memory_bytes, device, "set (worker_memory_bytes)")
    share = f", shared by {workers} workers" if workers > 1 else ""
    if gpu is not None:
        return Capacity(gpu // workers, device, f"cuda:0's total memory (nvidia-smi){share}")
    available = mem_available_bytes()
    return Capacity(None if available is None else available // workers, device, f"MemAvailable{share}")


def cpu_share(workers: int) -> int:
    """The cores this process may run on, shared evenly by its `workers`, at least one each."""
    return max(1, len(os.sched_getaffinity(0)) // max(workers, 1))


@cache
def host_device() -> Device:
    """The device a worker started on this host trains on: cuda where nvidia-smi finds a GPU, else cpu.

    Asked once a process: a claim without a device and each 003 submission ask it, and a GPU does not
    come or go under a running process, while nvidia-smi takes tens of milliseconds to answer."""
    return _device(gpu_memory_bytes())


def _device(gpu_memory: int | None) -> Device:
    return "cuda" if gpu_memory is not None else "cpu"


def gpu_memory_bytes() -> int | None:
    """The first GPU's total memory, or None without a working nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return int(out.split()[0]) * 1024**2  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def mem_available_bytes(meminfo: Path = MEMINFO) -> int | None:
    """The kernel's MemAvailable (kB in the file), or None where there is no /proc/meminfo."""
    try:
        for line in meminfo.read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "MemAvailable":
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def format_bytes(n: int) -> str:
    """11.2 GB, 84.3 MB: decimal units, one decimal rounded up, so "≥ that" is enough to hold `n`."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size or unit == "kB":
            return f"{math.ceil(n / size * 10) / 10:.1f} {unit}"
    raise AssertionError("unreachable")
