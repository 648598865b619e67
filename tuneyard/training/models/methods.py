"""Whether a training method can run on a device. No torch import: the API checks this too."""

from __future__ import annotations

from tuneyard.errors import UnsupportedError
from tuneyard.spec.methods import METHODS


def check_method_supported(method: str, device: str | None = None) -> None:
    """Raise UnsupportedError (a user error) when `method` cannot run on `device` ("cpu", "cuda",
    "cuda:1", "mps"); without a device, on this host as far as can be told without torch."""
    if method not in METHODS:
        raise UnsupportedError(f"unknown training method {method!r}; use one of {', '.join(METHODS.names())}")
    problems = METHODS.get(method).unavailable(device)
    if problems:
        portable = [m.name for m in METHODS if not m.requires and m.output == METHODS.get(method).output]
        instead = f" Use method {portable[0]!r}, which trains the same kind of model without them." if portable else ""
        raise UnsupportedError(
            f"method {method!r} is not available here: " + "; ".join(problems) + "." + instead,
            method=method, device=device,
        )
