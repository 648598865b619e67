"""bf16 by measurement: `bf16: auto` is decided by a short probe of this device, cached per machine.

Machines of one kind differ: one CPU has AMX and multiplies bf16 matrices four times as fast as
fp32, another emulates bf16 slower than fp32, and a rule read from CPU flags or a CUDA capability
has been wrong both ways. So the runner times a matmul in both precisions on the device in front of
it, checks that bf16's answers are sound, and turns autocast on only when bf16 is clearly faster.
The verdict is kept under the model cache, keyed by the device's identity and torch's version, so
each machine measures once and every later job on it decides the same; the figures go to spec.json.

The probe draws its matrices from a generator of its own: it leaves the global random streams,
and so the run, untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

PROBE_VERSION = 1
"""Bumped when what the probe measures changes, so older verdicts are measured again."""

MIN_SPEEDUP = 1.3
"""bf16 must multiply at least this much faster than fp32 to be worth its rounding (and the casts
autocast adds around every matmul, which the probe does not time)."""

MAX_RELATIVE_ERROR = 1.0e-2
"""bf16 keeps 8 bits of mantissa (~0.4 % per rounding); a sound matmul with fp32 accumulation
lands well within 1 % of the exact product in norm. Past it, the kernels accumulate in bf16 or worse."""

SIZE = 512
ROUNDS = 20
BUDGET_S = 1.0
"""Rounds stop past this (after one): where bf16 is emulated, one SIZE² matmul takes a second."""


@dataclass(frozen=True)
class Bf16Probe:
    """What the probe measured on this device and what it decided."""

    use_bf16: bool
    reason: str
    fp32_gflops: float
    bf16_gflops: float
    relative_error: float  # of the bf16 matmul against an fp64 one, in Frobenius norm
    device: str  # the identity the verdict is cached under
    torch_version: str
    cached: bool = False  # read from the machine's cache rather than measured by this run

    def record(self) -> dict[str, Any]:
        """The figures as spec.json records them."""
        return asdict(self)


def device_identity(device: torch.device) -> str:
    """What decides bf16 speed: the GPU's name and capability, or the CPU's model, bf16 flags and cores."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda:{torch.cuda.get_device_name(index)}:sm{major}{minor}"
    model, flags = _cpu_model_and_flags()
    bf16_flags = ",".join(sorted(f for f in flags if "bf16" in f or f.startswith("amx")))
    return f"cpu:{model}:{bf16_flags or 'no-bf16-flags'}:{os.cpu_count()} cores"


def decide_bf16(device: torch.device, cache_dir: Path) -> Bf16Probe:
    """This machine's verdict: from its cache when measured before, else measured now and cached."""
    identity = device_identity(device)
    path = probe_path(cache_dir, "bf16", PROBE_VERSION, identity)
    cached = _read(path)
    if cached is not None:
        return cached
    probe = measure(device, identity)
    _write(path, probe)
    return probe


def probe_path(cache_dir: Path, kind: str, version: int, identity: str) -> Path:
    """Where a machine keeps a probe's verdict: keyed by what the probe measures (its kind and version),
    the device and torch's version, so a change of any of them is measured again."""
    key = hashlib.sha256(f"{version}|{identity}|{torch.__version__}".encode()).hexdigest()[:16]
    return Path(cache_dir) / "probes" / f"{kind}-{key}.json"


def measure(device: torch.device, identity: str = "") -> Bf16Probe:
    """Time a SIZE² matmul in fp32 and bf16, interleaved (best of ROUNDS each), and check bf16's error."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(SIZE, SIZE, generator=generator)
    b = torch.randn(SIZE, SIZE, generator=generator)
    exact = a.double() @ b.double()
    where = identity or device_identity(device)
    try:
        fp32, bf16, product = _interleaved_best(a.to(device), b.to(device), device)
    except RuntimeError as exc:  # a device or build without bf16 kernels
        return Bf16Probe(False, f"bf16 matmul failed: {exc}", 0.0, 0.0, float("nan"), where, torch.__version__)
    error = float((product.double().cpu() - exact).norm() / exact.norm())
    fp32_gflops, bf16_gflops = _gflops(fp32), _gflops(bf16)
    verdict, reason = verdict_of(fp32_gflops, bf16_gflops, error)
    return Bf16Probe(verdict, reason, round(fp32_gflops, 3), round(bf16_gflops, 3), error, where, torch.__version__)


def verdict_of(fp32_gflops: float, bf16_gflops: float, error: float) -> tuple[bool, str]:
    """bf16 on only when its matmul is sound and clearly faster; the reason says which figure decided."""
    if not error <= MAX_RELATIVE_ERROR:  # also refuses a NaN
        return False, f"bf16 matmul error {error:.2e} is past {MAX_RELATIVE_ERROR:.0e}"
    speedup = bf16_gflops / max(fp32_gflops, 1e-9)
    if speedup < MIN_SPEEDUP:
        return False, f"bf16 {speedup:.2f}x fp32, under {MIN_SPEEDUP}x"
    return True, f"bf16 {speedup:.2f}x fp32, error {error:.1e}"


def _interleaved_best(a: torch.Tensor, b: torch.Tensor, device: torch.device) -> tuple[float, float, torch.Tensor]:
    """Best seconds of one matmul in fp32 and in bf16, alternating so a busy moment hits both alike;
    and bf16's product, for the numerics check."""
    a16, b16 = a.bfloat16(), b.bfloat16()
    product = a16 @ b16  # warm-up, with a @ b: the libraries pick their kernels on the first call
    a @ b
    best = [float("inf"), float("inf")]
    deadline = time.perf_counter() + BUDGET_S
    for _ in range(ROUNDS):
        for slot, (x, y) in enumerate(((a, b), (a16, b16))):
            synchronize(device)
            started = time.perf_counter()
            x @ y
            synchronize(device)
            best[slot] = min(best[slot], time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return best[0], best[1], product


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a timing covers it (CPU work is done when the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gflops(seconds: float) -> float:
    return 2 * SIZE**3 / max(seconds, 1e-12) / 1e9


def _cpu_model_and_flags() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and value.strip():
                    model = value.strip()
                elif name.strip() == "flags":
                    flags = set(value.split())
                    break  # every core lists the same; the first core's model name came before
    except OSError:
        pass  # not Linux: the processor string alone
    return model, flags


def _read(path: Path) -> Bf16Probe | None:
    data = read_cached(path)
    try:
        return Bf16Probe(**{**data, "cached": True}) if data is not None else None
    except TypeError:
        return None  # a file this version cannot read: measure again


def _write(path: Path, probe: Bf16Probe) -> None:
    write_cached(path, {k: v for k, v in probe.record().items() if k != "cached"})


def read_cached(path: Path) -> dict[str, Any] | None:
    """A probe's figures as a machine's cache holds them; None when never measured or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # never measured here, or a broken file: measure again, never fatal
    return data if isinstance(data, dict) else None


def write_cached(path: Path, figures: dict[str, Any]) -> None:
    """Atomically, under a name of its own: runners starting together may each measure and write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(figures, indent=2) + "\n")
    os.replace(tmp, path)
