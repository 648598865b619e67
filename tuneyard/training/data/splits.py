"""Hold out an evaluation split, deterministically by seed. Pure Python."""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


def split_eval(items: list[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(train, eval): ``fraction`` of the items held out, chosen by ``seed``, order kept.

    Done on records, before tokenization, so the held-out set does not depend on the tokenizer
    or max_seq_length: runs on different base models evaluate on the same examples. At least
    one item is held out when fraction > 0, and at least one is left to train on.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"eval fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0 or len(items) < 2:
        return list(items), []
    count = min(len(items) - 1, max(1, round(len(items) * fraction)))
    held = set(random.Random(seed).sample(range(len(items)), count))
    train = [item for i, item in enumerate(items) if i not in held]
    evaluation = [item for i, item in enumerate(items) if i in held]
    return train, evaluation
