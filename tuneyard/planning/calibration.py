"""A worker's throughput, from what its own finished jobs measured.

A FLOP count is only a time once divided by what the machine really reaches, and that depends
on the device, its libraries and the shapes, none of which a table could know. So each finished
job records FLOPs and seconds (`tuneyard.training.footprint`), and a host's throughput is the
median FLOP/s of its newest jobs on that device: the median, so one job slowed by a neighbour
does not move it. Hosts, not worker ids: a worker restarts under a new id on the same machine.

The FLOP/s a host reaches is not one number: a small model's step is mostly the per-operation cost
of the framework (tiny-llama's 128-wide matmuls, a LoRA adapter's extra small ones, the recompute of
gradient checkpointing), a larger one's mostly its matmuls, more efficient the more tokens a
micro-batch holds. So the jobs most like the one estimated are its calibration: the same base model,
method, checkpointing and micro-batch size (`job_kind`) when the host has any, else the same model,
method and checkpointing at any micro-batch size, and all of the host's jobs on the device only when
it has none of those; the figure says which.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

RECENT = 10
"""Newest jobs per host and device the median is taken over."""


@dataclass(frozen=True)
class Sample:
    host: str | None
    device: str
    flops: float
    seconds: float
    overhead_seconds: float
    """Compute seconds beyond the steps: loading, evaluations, saving."""
    kind: str | None = None
    """The job's `job_kind`, when the job's spec is known."""

    @property
    def flops_per_second(self) -> float:
        return self.flops / self.seconds

    @classmethod
    def from_result(cls, result: Any, kind: str | None = None) -> Sample | None:
        """The sample a job's result holds; None for one without compute figures."""
        compute = result.get("compute") if isinstance(result, dict) else None
        if not isinstance(compute, dict):
            return None
        flops, seconds = compute.get("train_flops"), compute.get("train_seconds")
        if not isinstance(flops, int | float) or not isinstance(seconds, int | float) or seconds <= 0 or flops <= 0:
            return None
        total = result.get("compute_seconds")
        overhead = max(0.0, float(total) - float(seconds)) if isinstance(total, int | float) else 0.0
        host = compute.get("host")
        return cls(host if isinstance(host, str) else None, str(compute.get("device", "cpu")), float(flops),
                   float(seconds), overhead, kind)


def job_kind(base_model: Any, method: Any, gradient_checkpointing: Any, batch_size: Any, max_seq_length: Any) -> str:
    """What makes two jobs reach the same FLOP/s on one host: the model, the method, the recompute, and
    the micro-batch's size (batch_size x max_seq_length, to the nearest power of two: what a spec
    says, so a stored job and a request are bucketed alike)."""
    tokens = batch_size * max_seq_length if isinstance(batch_size, int) and isinstance(max_seq_length, int) else 0
    bucket = 2 ** round(math.log2(tokens)) if tokens > 0 else "?"
    return f"{base_model}|{method}|{'gc' if gradient_checkpointing is True else 'no-gc'}|{bucket}"


def _family(kind: str | None) -> str | None:
    """A kind without its micro-batch size."""
    return None if kind is None else kind.rsplit("|", 1)[0]


@dataclass(frozen=True)
class Throughput:
    """FLOP/s (and the seconds a job spends outside its steps) one host or the service reaches."""

    flops_per_second: float
    overhead_seconds: float
    jobs: int
    source: str
    """Where the figure comes from, in plain words (shown with every estimate)."""


def throughputs(samples: list[Sample], device: str, kind: str | None = None) -> dict[str, Throughput]:
    """Each host's throughput on `device`, from its newest RECENT samples (newest first in `samples`),
    of jobs of `kind` where the host has finished any."""
    by_host: dict[str, list[Sample]] = {}
    for sample in samples:
        if sample.device == device and sample.host is not None:
            by_host.setdefault(sample.host, []).append(sample)
    return {host: _like(own, kind, RECENT, f"host {host}'s", device) for host, own in by_host.items()}


def pooled(samples: list[Sample], device: str, kind: str | None = None) -> Throughput | None:
    """Every host's newest jobs on `device` together (of `kind` where any); None when none has finished one."""
    own = [s for s in samples if s.device == device]
    if not own:
        return None
    return _like(own, kind, RECENT * 4, "the service's", device)


def _like(samples: list[Sample], kind: str | None, newest: int, whose: str, device: str) -> Throughput:
    """The median of the newest samples of `kind`, else of its family, else of all of them, saying which."""
    like = [s for s in samples if kind is not None and s.kind == kind][:newest]
    if like:
        return _median(like, f"median of {whose} {len(like)} newest {device} jobs like this one ({kind})")
    family = [s for s in samples if kind is not None and _family(s.kind) == _family(kind)][:newest]
    if family:
        return _median(family, f"median of {whose} {len(family)} newest {device} jobs of the same model and "
                               f"method at other batch sizes ({_family(kind)})")
    chosen = samples[:newest]
    return _median(chosen, f"median of {whose} {len(chosen)} newest {device} jobs")


def _median(samples: list[Sample], source: str) -> Throughput:
    return Throughput(
        flops_per_second=statistics.median(s.flops_per_second for s in samples),
        overhead_seconds=statistics.median(s.overhead_seconds for s in samples),
        jobs=len(samples), source=source,
    )  # fmt: skip


def accuracy(errors: list[float]) -> dict[str, Any]:
    """The running error of the memory estimates (each in % of the measured peak): how many, the mean
    signed error (a bias), the mean and worst absolute error."""
    if not errors:
        return {"jobs": 0, "mean_error_pct": None, "mean_abs_error_pct": None, "worst_abs_error_pct": None}
    absolute = [abs(e) for e in errors]
    return {"jobs": len(errors), "mean_error_pct": round(statistics.mean(errors), 1),
            "mean_abs_error_pct": round(statistics.mean(absolute), 1), "worst_abs_error_pct": round(max(absolute), 1)}
