"""Causal-LM token loss, summed, so the training loop can normalize over a whole optimizer step.

Dividing by the loss tokens of the whole step (not of each micro-batch or row) makes the
loss independent of how examples are packed into rows and split into micro-batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def _targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The shifted targets and where they carry loss: position t predicts labels[t + 1]."""
    targets = labels[:, 1:]
    return targets, targets != IGNORE_INDEX


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum of the cross-entropy over loss tokens, in fp32; number of loss tokens).

    Only the rows of logits that carry loss are cast to fp32, which saves memory when prompts
    are masked; the result is the same as casting everything.
    """
    targets, keep = _targets(labels)
    picked = logits[:, :-1][keep].float()
    loss = F.cross_entropy(picked, targets[keep], reduction="sum")
    return loss, int(keep.sum())


def chunked_token_loss_sum(
    hidden: torch.Tensor, lm_head_weight: torch.Tensor, labels: torch.Tensor, chunk_size: int = 1024
) -> tuple[torch.Tensor, int]:
    """token_loss_sum from the final hidden states, never materializing all the logits.

    Logits are made ``chunk_size`` tokens at a time and recomputed in backward, so peak memory
    holds one chunk's fp32 logits instead of (tokens x vocabulary). Only for models whose
    logits are exactly ``hidden @ lm_head_weight.T`` (no bias, scale or soft-capping).
    """
    targets, keep = _targets(labels)
    states = hidden[:, :-1][keep]
    wanted = targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, states.shape[0], chunk_size):
        end = start + chunk_size
        part = checkpoint(_chunk_loss, states[start:end], lm_head_weight, wanted[start:end], use_reentrant=False)
        total = total + part
    return total, int(keep.sum())


def _chunk_loss(states: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy((states @ weight.T).float(), targets, reduction="sum")
