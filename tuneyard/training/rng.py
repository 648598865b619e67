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

from tuneyard.errors import CheckpointError
from tuneyard.training.ranks import Ranks

# The purposes the runner seeds; each names one consumer of the global streams.
PURPOSE_METHOD_INIT = "method-init"  # a method's new weights (LoRA's A matrices)
PURPOSE_TRAINING = "training"  # what training draws step after step (dropout)


def training_purpose(ranks: Ranks) -> str:
    """What a rank draws while training (its dropout) comes from a stream of its own: ranks drawing the
    same masks would be one dropout repeated, not independent ones. Rank 0's is a single process's."""
    return PURPOSE_TRAINING if ranks.rank == 0 else f"{PURPOSE_TRAINING}-rank-{ranks.rank}"


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


def ranks_rng_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    """What a checkpoint keeps of the ranks' streams: a single process's as ever, else every rank's."""
    return states[0] if len(states) == 1 else {"world_size": len(states), "ranks": states}


def rank_rng_state(saved: dict[str, Any], ranks: Ranks) -> dict[str, Any]:
    """This rank's streams from a checkpoint's; a CheckpointError when it was written by another number
    of processes, whose streams cannot be dealt out to these exactly."""
    written_by = saved.get("world_size", 1)
    if written_by != ranks.world_size:
        raise CheckpointError(
            f"distributed.num_processes: the checkpoint was written by {written_by} process(es) and this run has "
            f"{ranks.world_size}; resume it with the number it was written by", field="distributed.num_processes")
    return saved["ranks"][ranks.rank] if "ranks" in saved else saved
