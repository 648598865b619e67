"""The order of the data: which rows make which micro-batch of which optimizer step.

Pure arithmetic, so that a resumed run computes the very same order from (seed, epoch)
and needs only its position saved: no sampler state, no iterator to fast-forward.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingPlan:
    rows: int
    batch_size: int
    accumulation: int
    epochs: int
    max_steps: int | None
    seed: int

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.accumulation)

    @property
    def total_steps(self) -> int:
        return self.max_steps if self.max_steps is not None else self.epochs * self.steps_per_epoch

    def epoch_order(self, epoch: int) -> list[int]:
        """A fresh shuffle per epoch from (seed, epoch) alone, independent of any global RNG."""
        order = list(range(self.rows))
        random.Random(f"tuneyard-order-{self.seed}-{epoch}").shuffle(order)
        return order

    def micro_batches(self, epoch: int) -> list[list[int]]:
        order = self.epoch_order(epoch)
        return [order[i : i + self.batch_size] for i in range(0, self.rows, self.batch_size)]

    def step_batches(self, epoch: int, batch_index: int) -> list[list[int]]:
        """The micro-batches of the optimizer step starting at `batch_index` of `epoch`."""
        batches = self.micro_batches(epoch)
        return batches[batch_index : batch_index + self.accumulation]

    def advance(self, epoch: int, batch_index: int) -> tuple[int, int]:
        """The position after one optimizer step; an epoch's last step may be short."""
        batch_index += self.accumulation
        if batch_index >= self.batches_per_epoch:
            return epoch + 1, 0
        return epoch, batch_index
