"""A worker's throughput, from what its own finished jobs measured.

A FLOP count is only a time once divided by what the machine really reaches, and that depends
on the device, its libraries and the shapes, none of which a table could know. So each finished
job records FLOPs and seconds (`tuneyard.training.footprint`), and a host's throughput is the
median FLOP/s of its newest jobs on that device: the median, so one job slowed by a neighbour
does not move it. Hosts, not worker ids: a worker restarts under a new id on the same machine.

The FLOP/s a host reaches is not one number: a small model's step is mostly the per-operation cost
of the framework (tiny-llama's 128-wide matmuls, a LoRA adapter's extra small ones, the recompute of
gradient checkpointing), a larger one's mostly its matmuls, more efficient the more tokens a
micro-batch holds (SmolLM2-135M on CPU reached ~2.5x the FLOP/s at 128 tokens a micro-batch as at
32). So the jobs most like the one estimated are its calibration (`JobKind`): the same base model,
method and checkpointing, and then the micro-batch's size in tokens as the job really ran it (what
a result records, not the spec's batch_size x max_seq_length, which padding-free batches of short
examples fall far short of):

- jobs within SAME_SIZE of its tokens, where the host has any;
- else, when it has jobs both smaller and larger, the FLOP/s between the two nearest sizes, read
  off the straight line through them in log tokens and log FLOP/s (efficiency grows about as a
  power of the micro-batch, so a power law between two measured sizes);
- else the jobs at the nearest size it has, nearest in log tokens (a ratio, not a difference:
  64 tokens is as far from 32 as 256 from 128);
- and all of the host's jobs on the device only when it has none of the same model, method and
  checkpointing; the figure says which.
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
    kind: JobKind | None = None
    """The job's `job_kind`, when the job's spec is known."""

    @property
    def flops_per_second(self) -> float:
        return self.flops / self.seconds

    @classmethod
    def from_result(cls, result: Any, kind: JobKind | None = None) -> Sample | None:
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


@dataclass(frozen=True)
class JobKind:
    """What makes two jobs reach the same FLOP/s on one host: the model, the method and the recompute
    (`family`), and the tokens of a micro-batch as it ran."""

    family: str
    tokens: float | None = None


def job_kind(base_model: Any, method: Any, gradient_checkpointing: Any, micro_batch_tokens: Any) -> JobKind:
    """The kind of a job or request; `micro_batch_tokens` None (or not a positive number) where unknown."""
    family = f"{base_model}|{method}|{'gc' if gradient_checkpointing is True else 'no-gc'}"
    sized = isinstance(micro_batch_tokens, int | float) and micro_batch_tokens > 0
    return JobKind(family, float(micro_batch_tokens) if sized else None)


@dataclass(frozen=True)
class Throughput:
    """FLOP/s (and the seconds a job spends outside its steps) one host or the service reaches."""

    flops_per_second: float
    overhead_seconds: float
    jobs: int
    source: str
    """Where the figure comes from, in plain words (shown with every estimate)."""


def throughputs(samples: list[Sample], device: str, kind: JobKind | None = None) -> dict[str, Throughput]:
    """Each host's throughput on `device`, from its newest RECENT samples (newest first in `samples`),
    of jobs of `kind` where the host has finished any."""
    by_host: dict[str, list[Sample]] = {}
    for sample in samples:
        if sample.device == device and sample.host is not None:
            by_host.setdefault(sample.host, []).append(sample)
    return {host: _like(own, kind, RECENT, f"host {host}'s", device) for host, own in by_host.items()}


def pooled(samples: list[Sample], device: str, kind: JobKind | None = None) -> Throughput | None:
    """Every host's newest jobs on `device` together (of `kind` where any); None when none has finished one."""
    own = [s for s in samples if s.device == device]
    if not own:
        return None
    return _like(own, kind, RECENT * 4, "the service's", device)


SAME_SIZE = 1.1
"""Micro-batches within this factor of each other in tokens count as one size: at SmolLM2's slope
(2.5x the FLOP/s for 4x the tokens) 10 % more tokens is ~2.5 % more FLOP/s, well inside the time band."""


def _like(samples: list[Sample], kind: JobKind | None, newest: int, whose: str, device: str) -> Throughput:
    """The FLOP/s of the newest samples most like `kind` (the module docstring's order), saying whence."""
    family = [s for s in samples if kind is not None and s.kind is not None and s.kind.family == kind.family]
    if kind is None or not family:
        chosen = samples[:newest]
        return _median(chosen, f"median of {whose} {len(chosen)} newest {device} jobs")
    sized = [s for s in family if s.kind is not None and s.kind.tokens is not None]
    if kind.tokens is None or not sized:
        chosen = family[:newest]
        return _median(chosen, f"median of {whose} {len(chosen)} newest {device} jobs of the same model and "
                               f"method ({kind.family})")
    return _by_size(sized, kind.tokens, newest, f"{whose} newest {device} jobs of {kind.family}")


def _tokens(sample: Sample) -> float:
    assert sample.kind is not None and sample.kind.tokens is not None  # _by_size takes sized samples only
    return sample.kind.tokens


def _by_size(sized: list[Sample], tokens: float, newest: int, whose: str) -> Throughput:
    """Of samples that all know their micro-batch tokens: those of `tokens`' size, else a power law
    between the nearest smaller and larger sizes, else the nearest size."""
    same = [s for s in sized if abs(math.log(_tokens(s) / tokens)) <= math.log(SAME_SIZE)][:newest]
    if same:
        return _median(same, f"median of {len(same)} of {whose} like this one (~{tokens:.0f} tokens a micro-batch)")
    smaller = [s for s in sized if _tokens(s) < tokens]
    larger = [s for s in sized if _tokens(s) > tokens]
    low = _nearest_size(smaller, max(map(_tokens, smaller)), newest) if smaller else []
    high = _nearest_size(larger, min(map(_tokens, larger)), newest) if larger else []
    if low and high:
        at_low, at_high = _median(low, ""), _median(high, "")
        t_low, t_high = statistics.median(map(_tokens, low)), statistics.median(map(_tokens, high))
        share = math.log(tokens / t_low) / math.log(t_high / t_low)
        flops = math.exp((1 - share) * math.log(at_low.flops_per_second) + share * math.log(at_high.flops_per_second))
        return Throughput(
            flops_per_second=flops, overhead_seconds=statistics.median(s.overhead_seconds for s in low + high),
            jobs=len(low) + len(high), source=(
                f"between {whose} at ~{t_low:.0f} and ~{t_high:.0f} tokens a micro-batch "
                f"({len(low)} and {len(high)} jobs), for {tokens:.0f}"),
        )  # fmt: skip
    nearest = low or high
    return _median(nearest, f"median of {len(nearest)} of {whose} at ~{statistics.median(map(_tokens, nearest)):.0f} "
                            f"tokens a micro-batch, the nearest size to {tokens:.0f}")


def _nearest_size(samples: list[Sample], tokens: float, newest: int) -> list[Sample]:
    """The newest samples of the size `tokens` (one of theirs) is."""
    return [s for s in samples if abs(math.log(_tokens(s) / tokens)) <= math.log(SAME_SIZE)][:newest]


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
