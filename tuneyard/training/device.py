"""Which torch device a run trains on: the one its spec requires (`contract.SPEC_DEVICE_FIELD`),
else the best this host has.

A required device is honoured or the run fails: a `cpu` job given to a CUDA worker trains on the
CPU, and a `cuda` job never trains on the CPU quietly (hours slower, and not what was asked). The
failure is the platform's (a worker that declared cuda took it, yet torch sees no GPU), so the job
is retried, by whichever worker of that device claims it next.
"""

from __future__ import annotations

import torch

from tuneyard.errors import DeviceUnavailable


def pick_device(required: str | None = None) -> torch.device:
    """`required` (cpu | cuda), or cuda where torch sees a GPU, else cpu; DeviceUnavailable for a
    required cuda that torch cannot use here."""
    if required is None:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if required == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"the job requires cuda and torch sees no CUDA device here (torch {torch.__version__}, built for "
            f"CUDA {torch.version.cuda or 'none'}); it is never trained on cpu instead", required=required)
    return torch.device(required)
