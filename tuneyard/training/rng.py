"""Every random number generator a run touches: seeded per consumer, captured and restored for exact resume.

A run must be a function of its resolved spec. The global streams are shared by everything in
the process (building a base model on a cold cache draws thousands of numbers from them, a warm
cache none), so a consumer that draws from them is seeded from the spec's seed at the point it
draws, under a purpose of its own, never left to wherever the stream happens to be.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

# The purposes the runner seeds; each names one consumer of the global streams.
PURPOSE_METHOD_INIT = "method-init"  # a method's new weights (LoRA's A matrices)
PURPOSE_TRAINING = "training"  # what training draws step after step (dropout)


def derive_seed(seed: int, purpose: str) -> int:
    """A seed of `purpose`'s own from the spec's seed: consumers never share a stream by accident."""
    digest = hashlib.sha256(f"tuneyard:{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # torch.manual_seed takes < 2**63


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextmanager
def seeded(seed: int, purpose: str) -> Iterator[None]:
    """Run the block with every global stream seeded for `purpose`, then put them back as they were."""
    saved = capture_rng_state()
    seed_everything(derive_seed(seed, purpose))
    try:
        yield
    finally:
        restore_rng_state(saved)


def capture_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
