"""Held-out loss and perplexity: the same token-weighted loss as training, without gradients; and how
far a changed model's next-token distributions moved from its source's (function preservation)."""

from __future__ import annotations

from collections.abc import Iterable
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


@torch.no_grad()
def next_token_kl(source: Any, model: Any, batches: Iterable[dict[str, torch.Tensor]], device: Any) -> float:
    """Mean per-token KL(source ‖ model) of the next-token distributions over `batches`, at every
    position whose next token carries loss: what growth and contraction report as
    `function_preservation` (0 when the function is kept). The logits at position t predict token
    t + 1, whose label is labels[t + 1] (transformers shifts the labels inside its loss), so position t
    counts when labels[t + 1] is not ignored. NaN when no position does.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            predicts_loss = batch["labels"][:, 1:].to(device) != -100
            kl, n = mean_token_kl(source(**inputs, use_cache=False).logits[:, :-1],
                                  model(**inputs, use_cache=False).logits[:, :-1], predicts_loss)
            total, count = total + kl, count + n
    finally:
        model.train(was_training)
    return total / count if count else float("nan")


@torch.no_grad()
def mean_token_kl(source_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(sum over the masked positions of KL(source ‖ model) of their distributions, positions), in fp64."""
    log_p = torch.log_softmax(source_logits.double(), dim=-1)
    log_q = torch.log_softmax(logits.double(), dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return float(kl[mask].sum()), int(mask.sum())
