"""The fused chunked loss gives the plain cross-entropy's value and gradients, whatever needs them."""

from __future__ import annotations

import pytest
import torch

from tuneyard.training.loss import chunked_token_loss_sum, token_loss_sum


@pytest.mark.parametrize("weight_trains", [True, False])  # full fine-tuning / a frozen LoRA base
def test_fused_loss_matches_the_plain_one(weight_trains: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 9, 16, generator=gen, requires_grad=True)
    weight = torch.randn(50, 16, generator=gen).requires_grad_(weight_trains)
    labels = torch.randint(0, 50, (2, 9), generator=gen)
    labels[0, :4] = -100  # a masked prompt
    plain, plain_count = token_loss_sum(hidden @ weight.T, labels)
    wanted = [hidden, weight] if weight_trains else [hidden]
    plain_grads = torch.autograd.grad(plain * 0.5, wanted)
    fused, fused_count = chunked_token_loss_sum(hidden, weight, labels, chunk_size=3)
    fused_grads = torch.autograd.grad(fused * 0.5, wanted)
    assert fused_count == plain_count == 13  # 2 x 8 shifted targets, 3 of them masked
    assert torch.allclose(fused, plain, rtol=1e-6, atol=0)
    for got, expected in zip(fused_grads, plain_grads, strict=True):
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_fused_loss_without_gradients() -> None:
    hidden, weight = torch.randn(1, 5, 8), torch.randn(20, 8)
    labels = torch.randint(0, 20, (1, 5))
    with torch.no_grad():
        fused, _ = chunked_token_loss_sum(hidden, weight, labels, chunk_size=2)
    plain, _ = token_loss_sum(hidden @ weight.T, labels)
    assert torch.allclose(fused, plain, rtol=1e-6, atol=0)
