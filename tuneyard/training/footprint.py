"""What a run really used, beside what `tuneyard.planning` estimated for it, for its result card.

"Measured peak" is defined here, once, and it is what the estimate estimates:
- on CPU, the process's peak resident set (the kernel's high-water mark, VmHWM, reset just before
  the model is loaded, so no peak between two samples is missed and none from before counts) minus
  its resident set then: the runner's imports (torch, transformers) are there before any job and are
  not the job's (ru_maxrss, which cannot be reset, where /proc is not there);
- on CUDA, torch's peak allocated memory on the device since just before the model is loaded.

Compute is recorded as the FLOPs the estimate counts for the tokens really trained on and the
seconds the optimizer steps took: their ratio is this worker's throughput, what later estimates
of its time divide by (`tuneyard.planning.calibration`).
"""

from __future__ import annotations

import contextlib
import resource
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

from tuneyard.errors import SpecError
from tuneyard.planning.compute import train_flops
from tuneyard.planning.memory import TrainingSetup, estimate_memory
from tuneyard.planning.shape import ModelShape
from tuneyard.training.device import pick_device

MEASURED_AS = {
    "cpu": "peak RSS (VmHWM, reset before the model was loaded) minus RSS then",
    "cuda": "peak allocated CUDA memory minus allocated before the model was loaded",
}


_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> None:
    """Start the kernel's RSS high-water mark (VmHWM) again from the RSS now (Linux 4.0 and later).

    ru_maxrss cannot be reset: a peak reached before the model loads (while imports settled) would
    count as training memory whenever the RSS had dropped by the baseline, as pages reclaimed on a
    busy machine make it do.
    """
    # Not Linux, or not allowed: VmHWM (or ru_maxrss) is then the process's whole peak.
    with contextlib.suppress(OSError):
        _PROC_CLEAR_REFS.write_text("5")


def _peak_rss_bytes() -> int:
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    # Linux reports ru_maxrss in KiB, macOS in bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class Footprint:
    """Started just before the model loads; read once the run has finished."""

    device: str
    baseline: int

    @classmethod
    def start(cls, required_device: str | None = None) -> Footprint:
        """Measured on the device the run trains on (`pick_device`): a cpu job on a GPU host by its RSS."""
        if pick_device(required_device).type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return cls("cuda", torch.cuda.memory_allocated())
        _reset_peak_rss()
        return cls("cpu", psutil.Process().memory_info().rss)

    def measured_peak(self) -> int:
        peak = torch.cuda.max_memory_allocated() if self.device == "cuda" else _peak_rss_bytes()
        return max(0, peak - self.baseline)

    def report(self, config: Any, recipe: Any, result: dict[str, Any]) -> dict[str, Any]:
        """{"memory": estimate vs measured, "compute": FLOPs, seconds, FLOP/s} for the result card;
        {} for a job that trains nothing, or whose model's shape cannot be read."""
        session = getattr(recipe, "session", None)
        model_config = getattr(getattr(session, "model", None), "config", None)
        # A recipe that trains has a plan of steps and the loop's hyperparameters (a train job's
        # too, though its spec has no method and its knobs are Fusion's); merge and contract have none.
        trains = getattr(recipe, "plan", None) is not None and getattr(recipe, "hp", None) is not None
        if model_config is None or not trains:
            return {}
        method = config.method
        try:
            shape = ModelShape.from_config(model_config.to_dict())
        except SpecError:
            return {}
        hp = recipe.hp.model_dump()
        # the figure the service knows of a stored dataset too: its tokens over its examples
        stats = getattr(getattr(recipe, "data", None), "stats", None)
        example_tokens = stats.tokens / stats.examples if stats is not None and stats.examples else None
        setup = TrainingSetup.from_hyperparams(method, hp, bool(getattr(session, "bf16", False)), example_tokens)
        estimate = estimate_memory(shape, setup, "cuda" if self.device == "cuda" else "cpu")
        measured = self.measured_peak()
        report: dict[str, Any] = {"memory": {
            "estimated_peak_bytes": estimate.peak_bytes, "measured_peak_bytes": measured,
            "error_pct": round(100.0 * (estimate.peak_bytes - measured) / max(measured, 1), 1),
            "measured_as": MEASURED_AS[self.device], "estimate": estimate.to_json(),
        }}
        seconds = float(result.get("train_seconds") or 0.0)
        tokens = int(result.get("tokens_processed") or 0)
        flops = train_flops(shape, setup, tokens)
        # the mean micro-batch as it ran: what later estimates' calibration matches a job on (planning.calibration)
        micro_batches = int(result.get("steps") or 0) * setup.gradient_accumulation_steps
        report["compute"] = {
            "train_flops": flops, "train_seconds": seconds,
            "micro_batch_tokens": round(tokens / micro_batches, 1) if micro_batches and tokens else None,
            "flops_per_second": round(flops / seconds, 1) if seconds > 0 else None, "device": self.device,
            "host": socket.gethostname(),  # a worker restarts under a new id; its machine is what was measured
        }
        return report
