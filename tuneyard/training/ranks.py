"""Which process of a run this is: its rank among the run's processes. No torch here.

A run launched by torchrun has one process per rank, told its place by torchrun's environment
variables (RANK, LOCAL_RANK, WORLD_SIZE); the runner's entry reads them once and passes a `Ranks`
down. Rank 0 is the primary: it alone writes the run's telemetry, checkpoints, final/ and result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    """This process's place among all of the run's processes, 0 to world_size - 1."""
    local_rank: int = 0
    """Its place on this node: the GPU it trains on."""
    world_size: int = 1
    """The run's processes, all nodes together."""

    @classmethod
    def from_launcher(cls, env: Mapping[str, str]) -> Ranks:
        """The place torchrun gave this process in its environment; one process alone without it."""
        if "WORLD_SIZE" not in env:
            return cls()
        return cls(int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"])), int(env["WORLD_SIZE"]))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def primary(self) -> bool:
        """Rank 0: the one process that writes the run's files."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous share of `items`: ceil(len / world_size) each in rank order, so the last
        ranks get fewer where they do not divide evenly (none, for a step shorter than the world)."""
        share = math.ceil(len(items) / self.world_size)
        return list(items[self.rank * share : (self.rank + 1) * share])
