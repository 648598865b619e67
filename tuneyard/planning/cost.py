"""What a job costs: its compute seconds times the configured price of the device kind it ran on.

One rule for estimates (`services/estimates.py`, seconds estimated) and results (the worker prices
every completed job's result from the seconds its runner measured, `worker/store_reporter.py`).
Prices are `Settings.price_per_cpu_hour` / `price_per_cuda_hour`, USD per device-hour, 0 (not billed)
unless set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneyard.planning.memory import Device


@dataclass(frozen=True)
class Prices:
    """USD per device-hour, by device kind."""

    cpu: float = 0.0
    cuda: float = 0.0

    def per_hour(self, device: str) -> float:
        return self.cuda if device_kind(device) == "cuda" else self.cpu


def device_kind(device: str | None) -> Device:
    """`cuda`, `cuda:0` → cuda; anything else (cpu, unknown) → cpu."""
    return "cuda" if device and device.startswith("cuda") else "cpu"


def cost_usd(seconds: float, price_per_hour: float) -> float:
    return round(seconds / 3600.0 * price_per_hour, 6)


def priced(result: dict[str, Any], prices: Prices, worker_device: str) -> dict[str, Any]:
    """`result` with `cost_usd` (None when it has no compute seconds) and the `price_per_device_hour`
    it was computed at, for the device the result names, else the one the worker trains on."""
    price = prices.per_hour(str(result.get("device") or worker_device))
    seconds = result.get("compute_seconds")
    cost = cost_usd(float(seconds), price) if isinstance(seconds, int | float) else None
    return {**result, "cost_usd": cost, "price_per_device_hour": price}
