"""Causal-LM token loss, summed, so the training loop can normalize over a whole optimizer step;
and DPO's preference loss over sequence log-probabilities.

Dividing by the loss tokens of the whole step (not of each micro-batch or row) makes the
loss independent of how examples are packed into rows and split into micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

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

    Only the positions that carry loss are projected onto the vocabulary (prompts, padding and
    each example's last position are skipped), ``chunk_size`` at a time, so memory holds one
    chunk's fp32 logits instead of (tokens x vocabulary). Only for models whose logits are
    exactly ``hidden @ lm_head_weight.T`` (no bias, scale or soft-capping).
    """
    targets, keep = _targets(labels)
    loss = _FusedLinearCrossEntropy.apply(hidden[:, :-1][keep], lm_head_weight, targets[keep], chunk_size)
    return loss, int(keep.sum())


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """sum(cross_entropy(states @ weight.T, targets)), its gradients computed chunk by chunk in
    forward: the softmax of a chunk is its own gradient (minus the one-hot), so nothing is kept
    for backward but the gradients themselves, and no logits are ever recomputed."""

    @staticmethod
    def forward(
        ctx: Any, states: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        want_states, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_states = torch.empty_like(states) if want_states else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        total = torch.zeros((), dtype=torch.float32, device=states.device)
        for start in range(0, states.shape[0], chunk_size):
            part, wanted = states[start : start + chunk_size], targets[start : start + chunk_size]
            log_probs = (part @ weight.T).float().log_softmax(dim=-1)
            rows = torch.arange(wanted.shape[0], device=wanted.device)
            total -= log_probs[rows, wanted].sum()
            if grad_states is None and grad_weight is None:
                continue
            # d(sum CE)/d logits = softmax - one_hot, made in place over the chunk's log-probs
            grad_logits = log_probs.exp_()
            grad_logits[rows, wanted] -= 1.0
            grad_logits = grad_logits.to(states.dtype)
            if grad_states is not None:
                grad_states[start : start + chunk_size] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight += (grad_logits.T @ part).float()
        ctx.save_for_backward(*(g for g in (grad_states, grad_weight) if g is not None))
        ctx.has = (grad_states is not None, grad_weight is not None)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = iter(ctx.saved_tensors)
        has_states, has_weight = ctx.has
        grad_states = grad_weight = None
        if has_states:
            grad_states = next(saved)
            grad_states = grad_states * grad_output.to(grad_states.dtype)
        if has_weight:
            grad_weight = (next(saved) * grad_output).to(ctx.weight_dtype)
        return grad_states, grad_weight, None, None


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probability (fp32) of its loss tokens: log p(answer | prompt) for a
    row whose labels mark only the answer. Shape (rows,)."""
    targets, keep = _targets(labels)
    log_probs = logits[:, :-1].float().log_softmax(dim=-1)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * keep).sum(dim=-1)


@dataclass(frozen=True)
class DpoTerms:
    """DPO's loss per pair, and what it says about the pairs (Rafailov et al. 2023, eq. 7).

    A pair's implicit reward for an answer y is beta * (log pi(y|x) - log pi_ref(y|x)); the
    margin is the preferred answer's reward minus the other's, and the loss -log sigmoid(margin).
    """

    losses: torch.Tensor  # (pairs,), differentiable through the policy's log-probs
    margins: torch.Tensor  # (pairs,), detached

    @property
    def correct(self) -> int:
        """Pairs whose preferred answer the policy rewards strictly more: the preference accuracy's count."""
        return int((self.margins > 0).sum())


def dpo_terms(
    policy_preferred: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_preferred: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> DpoTerms:
    """The sigmoid DPO loss of each pair from the four sequence log-probs (each of shape (pairs,))."""
    logits = (policy_preferred - reference_preferred) - (policy_rejected - reference_rejected)
    margins = beta * logits
    # -log(sigmoid(z)) as softplus(-z): exact where sigmoid underflows
    return DpoTerms(losses=F.softplus(-margins), margins=margins.detach())
