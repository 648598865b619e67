"""A first figure for a host's throughput before any job has finished there: a few timed steps of one of
the model's decoder layers, measured on this host once per process and shape.

Timing a few real steps of the job itself would mean importing transformers and building the model,
seconds to minutes before the first step, which an estimate answered within a second cannot wait
for. What it can time is the bulk of a step's arithmetic: one layer's seven linears (q, k, v, o,
gate, up, down) at the job's dimensions, forward and backward over the micro-batch's tokens (weight
gradients too when every weight trains), with torch's default threads, as the runner uses them. Its
FLOP/s then divides the job's FLOPs. What a layer alone leaves out (attention, norms, the framework's
per-operation cost, a LoRA adapter's small matmuls, the optimizer) makes a real step slower, so the
figure errs short on a steady host and is answered with a wider band than a calibrated one
(`PROBE_BAND` in services/estimates.py, which says how far off it was seen).

The probe runs in a thread of its own (importing torch takes seconds on a busy host) and its figure is
kept for the life of the process; an estimate waits for it at most `WAIT_SECONDS` and otherwise says
that the measurement is under way. It measures the API's host: where workers run elsewhere, a
worker's first finished job replaces it (`planning.calibration`).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass

from tuneyard.planning.shape import ModelShape

STEPS_SECONDS = 0.3
"""How long the timed steps run (after one untimed warm-up step)."""
MAX_TOKENS = 2048
"""Tokens a probe step multiplies at most: a bigger micro-batch reaches about the same FLOP/s."""
WAIT_SECONDS = 0.5
"""How long an estimate waits for a probe under way before answering without a time."""


@dataclass(frozen=True)
class LayerProbe:
    """What a probe step is: one decoder layer's linears at these widths, over `tokens` rows."""

    device: str
    hidden: int
    q_width: int
    kv_width: int
    intermediate: int
    tokens: int
    trains_weights: bool

    @classmethod
    def of(cls, shape: ModelShape, device: str, tokens: int, trains_weights: bool) -> LayerProbe:
        """The probe of a micro-batch of `tokens`, to the nearest power of two (as calibration buckets
        jobs), so that requests varying the batch share a few probes rather than each start one."""
        bucket = 2 ** round(math.log2(max(1, min(tokens, MAX_TOKENS))))
        return cls(device, shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim,
                   shape.intermediate, bucket, trains_weights)

    @property
    def flops(self) -> float:
        """FLOPs of one step: 2 per weight and token forward, as many for the activations' gradients,
        and as many again for the weights' when they train."""
        h = self.hidden
        weights = h * self.q_width + 2 * h * self.kv_width + self.q_width * h + 3 * h * self.intermediate
        return 2.0 * self.tokens * weights * (3 if self.trains_weights else 2)


@dataclass(frozen=True)
class ProbeResult:
    flops_per_second: float | None
    why: str
    """How it was measured, or why there is no figure."""


_results: dict[LayerProbe, ProbeResult] = {}
_running: dict[LayerProbe, threading.Thread] = {}
_lock = threading.Lock()
_one_at_a_time = threading.Lock()  # two probes at once would time each other, and load the host twice


def measured(probe: LayerProbe, wait: float = WAIT_SECONDS) -> ProbeResult | None:
    """The probe's figure, measuring it first if this process has not; None while it is still running."""
    with _lock:
        done = _results.get(probe)
        if done is not None:
            return done
        thread = _running.get(probe)
        if thread is None:
            # not a daemon: torch torn down under a step still running aborts the process at exit
            thread = threading.Thread(target=_measure, args=(probe,), name="throughput-probe")
            _running[probe] = thread
            thread.start()
    thread.join(wait)
    with _lock:
        return _results.get(probe)


def _measure(probe: LayerProbe) -> None:
    try:
        with _one_at_a_time:
            result = _time_steps(probe)
    except Exception as exc:  # a probe that cannot run leaves the estimate without a time, never fails it
        result = ProbeResult(None, f"this host's throughput could not be measured: {exc}")
    with _lock:
        _results[probe] = result
        _running.pop(probe, None)


def _time_steps(probe: LayerProbe) -> ProbeResult:
    import torch

    if probe.device == "cuda" and not torch.cuda.is_available():
        return ProbeResult(None, "this host has no CUDA device to measure")
    device = torch.device(probe.device)
    h, tokens, grad = probe.hidden, probe.tokens, probe.trains_weights

    def weight(d_in: int, d_out: int) -> torch.Tensor:
        return (torch.randn(d_in, d_out, device=device) / d_in**0.5).requires_grad_(grad)

    q, k, v = weight(h, probe.q_width), weight(h, probe.kv_width), weight(h, probe.kv_width)
    o, gate, up, down = (weight(probe.q_width, h), weight(h, probe.intermediate), weight(h, probe.intermediate),
                         weight(probe.intermediate, h))
    x = torch.randn(tokens, h, device=device, requires_grad=True)

    def step() -> None:
        attended = (x @ q) @ o + (x @ k).sum() + (x @ v).sum()  # k and v as an attention would read them
        mlp = (torch.nn.functional.silu(x @ gate) * (x @ up)) @ down
        (attended + mlp).square().mean().backward()
        if probe.device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: the kernels are chosen on the first call
    times: list[float] = []
    deadline = time.perf_counter() + STEPS_SECONDS
    while not times or time.perf_counter() < deadline:
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    rate = probe.flops / statistics.median(times)
    return ProbeResult(rate, (f"{len(times)} timed steps of one of the model's layers on this host "
                              f"({tokens} tokens, {rate / 1e9:.2f} GFLOP/s)"))
