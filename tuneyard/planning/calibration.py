"""A worker's throughput, from what its own finished jobs measured.

A FLOP count is only a time once divided by what the machine really reaches, and that depends
on the device, its libraries and the shapes, none of which a table could know. So each finished
job records FLOPs and seconds (`tuneyard.training.footprint`), and a host's throughput is the
median FLOP/s of its newest jobs on that device: the median, so one job slowed by a neighbour
does not move it. Hosts, not worker ids: a worker restarts under a new id on the same machine.
"""

from __future__ import annotations

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

    @property
    def flops_per_second(self) -> float:
        return self.flops / self.seconds

    @classmethod
    def from_result(cls, result: Any) -> Sample | None:
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
                   float(seconds), overhead)


@dataclass(frozen=True)
class Throughput:
    """FLOP/s (and the seconds a job spends outside its steps) one host or the service reaches."""

    flops_per_second: float
    overhead_seconds: float
    jobs: int
    source: str
    """Where the figure comes from, in plain words (shown with every estimate)."""


def throughputs(samples: list[Sample], device: str) -> dict[str, Throughput]:
    """Each host's throughput on `device`, from its newest RECENT samples (newest first in `samples`)."""
    by_host: dict[str, list[Sample]] = {}
    for sample in samples:
        if sample.device == device and sample.host is not None:
            by_host.setdefault(sample.host, []).append(sample)
    return {host: _median(own[:RECENT], f"median of host {host}'s {len(own[:RECENT])} newest {device} jobs")
            for host, own in by_host.items()}


def pooled(samples: list[Sample], device: str) -> Throughput | None:
    """Every host's newest jobs on `device` together; None when none has finished one."""
    own = [s for s in samples if s.device == device][: RECENT * 4]
    if not own:
        return None
    return _median(own, f"median of the service's {len(own)} newest {device} jobs")


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
