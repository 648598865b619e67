"""Held-out loss and perplexity: the same token-weighted loss as training, without gradients."""

from __future__ import annotations

from typing import Any

import torch

from tuneyard.training.data import Collate, collate


@torch.no_grad()
def evaluate(session: Any, rows: list[Any], batch_size: int, batch: Collate = collate) -> tuple[float, int]:
    """Mean loss per loss-bearing token over `rows`, and how many tokens that was.

    Evaluation draws no random numbers (dropout is off), so it can run at any step without
    changing what a resumed run computes afterwards.
    """
    model = session.model
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64), 0
    try:
        for start in range(0, len(rows), batch_size):
            loss_sum, n = session.loss_sum(batch(rows[start : start + batch_size], session.pad_token_id))
            total += loss_sum.double()
            count += n
    finally:
        model.train(was_training)
    return (total.item() / count if count else float("nan")), count
