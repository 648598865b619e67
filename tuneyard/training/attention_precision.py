"""The precision a bf16 run attends in, by measurement: bf16, or fp32 around the attention alone.

bf16 autocast runs sdpa in bf16 too, and whether that pays depends on the device's attention
kernels, not on its matmuls: on a CPU with AMX (bf16 matmul ~4x fp32), torch's CPU flash attention
took 1.4-2.9x *longer* forward and backward in bf16 than in fp32 at head dims 32 and 64 and
examples of 32 to 256 tokens, while fp32 inputs cast up from bf16 cost ~1.1-1.35x fp32's time (the
casts). A padding-free line attends each example on its own (models/attention.py), so a bf16 run
makes one such small call per example and layer, and its attention went from a sixth of a step's
time to two fifths (tiny-llama LoRA, profiled). CUDA's bf16 flash kernels, the other way round, are what bf16 is for.

So, as for `bf16: auto` (training/precision.py), the runner times one causal attention forward and
backward in both ways on the device in front of it, interleaved, and attends in fp32 where that is
faster. fp32 attention is never less exact than bf16's, so only speed decides. The verdict is
cached per machine beside bf16's and recorded in spec.json; the probe draws from a generator of
its own, leaving the run's random streams untouched.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tuneyard.training.precision import device_identity, probe_path, read_cached, synchronize, write_cached

PROBE_VERSION = 1
"""Bumped when what the probe measures changes, so older verdicts are measured again."""

HEADS, TOKENS, HEAD_DIM = 8, 128, 64
"""One example of a short chat at a common head size (SmolLM2 and Llama's 64). The verdict is
applied to every model: what it measures is the kernel family, which does not change with size
in the range measured (see the module docstring)."""

ROUNDS = 15
BUDGET_S = 1.0


@dataclass(frozen=True)
class AttentionProbe:
    """What the probe measured and decided: whether a bf16 run's attention computes in fp32."""

    fp32: bool
    bf16_ms: float  # best forward + backward in bf16
    fp32_ms: float  # best forward + backward with bf16 inputs cast to fp32 and the output back
    device: str
    torch_version: str
    cached: bool = False

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reason(self) -> str:
        return f"fp32 {self.fp32_ms:.2f} ms against bf16 {self.bf16_ms:.2f} ms a forward and backward"


def decide_attention_precision(device: torch.device, cache_dir: Path) -> AttentionProbe:
    """This machine's verdict: from its cache when measured before, else measured now and cached."""
    identity = device_identity(device)
    path = probe_path(cache_dir, "attention", PROBE_VERSION, identity)
    cached = read_cached(path)
    if cached is not None:
        try:
            return AttentionProbe(**{**cached, "cached": True})
        except TypeError:
            pass  # a file this version cannot read: measure again
    probe = measure(device, identity)
    write_cached(path, {k: v for k, v in probe.record().items() if k != "cached"})
    return probe


def measure(device: torch.device, identity: str = "") -> AttentionProbe:
    generator = torch.Generator().manual_seed(0)
    shape = (1, HEADS, TOKENS, HEAD_DIM)
    q, k, v, grad = (torch.randn(shape, generator=generator).to(device, torch.bfloat16) for _ in range(4))
    where = identity or device_identity(device)
    try:
        bf16, fp32 = _interleaved_best(q, k, v, grad, device)
    except RuntimeError:  # no bf16 attention kernel at all here: fp32 is the one that runs
        return AttentionProbe(True, float("inf"), 0.0, where, torch.__version__)
    return AttentionProbe(fp32 <= bf16, round(bf16 * 1e3, 4), round(fp32 * 1e3, 4), where, torch.__version__)


def _interleaved_best(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: torch.Tensor,
                      device: torch.device) -> tuple[float, float]:
    best = [float("inf"), float("inf")]
    deadline = time.perf_counter() + BUDGET_S
    for round_ in range(ROUNDS + 1):
        for slot, upcast in enumerate((False, True)):
            synchronize(device)
            started = time.perf_counter()
            _forward_backward(q, k, v, grad, upcast)
            synchronize(device)
            if round_:  # the first round picks the kernels
                best[slot] = min(best[slot], time.perf_counter() - started)
        if round_ and time.perf_counter() > deadline:
            break
    return best[0], best[1]


def _forward_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, upcast: bool) -> None:
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.to(grad.dtype).backward(grad)
