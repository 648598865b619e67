"""Which training methods can run on which device. No torch import: the API checks this too."""

from __future__ import annotations

import importlib.util

from tuneyard.errors import UnsupportedError

METHODS = ("lora", "full", "qlora")


def check_method_supported(method: str, device: str) -> None:
    """Raise UnsupportedError when `method` cannot run on `device` ("cpu", "cuda", "cuda:1", "mps")."""
    if method not in METHODS:
        raise UnsupportedError(f"unknown training method {method!r}; use one of {', '.join(METHODS)}")
    if method != "qlora":
        return
    problems = []
    if not device.startswith("cuda"):
        problems.append(f"the device is {device!r}, and bitsandbytes' 4-bit kernels need a CUDA GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        problems.append("the bitsandbytes package is not installed")
    if problems:
        raise UnsupportedError(
            "method 'qlora' is not available here: " + "; ".join(problems) + ". Use method 'lora', which "
            "trains the same adapter on an unquantized base.",
            method=method,
            device=device,
        )
