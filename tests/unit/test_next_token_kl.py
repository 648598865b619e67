"""function_preservation's KL is taken where the next token carries loss: the logits at position t
predict token t + 1, so t counts when labels[t + 1] does (it was one position off: the last
position, which predicts nothing, counted, and the one predicting an answer's first token did not)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch

from tuneyard.training.evaluation import next_token_kl

VOCAB = 5


class FixedLogits(torch.nn.Module):
    """A 'model' whose logits are given: enough to see which positions the KL reads."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.fixed = logits

    def forward(self, **_inputs: Any) -> Any:
        return SimpleNamespace(logits=self.fixed)


def batch() -> dict[str, torch.Tensor]:
    # a prompt of two tokens then an answer of two: labels carry loss at positions 2 and 3,
    # predicted by the logits at positions 1 and 2
    return {"input_ids": torch.tensor([[1, 2, 3, 4]]), "labels": torch.tensor([[-100, -100, 3, 4]])}


def changed_at(position: int) -> FixedLogits:
    logits = torch.zeros(1, 4, VOCAB)
    logits[0, position, 0] = 5.0
    return FixedLogits(logits)


def test_only_the_positions_that_predict_a_loss_bearing_token_count() -> None:
    source = FixedLogits(torch.zeros(1, 4, VOCAB))
    assert next_token_kl(source, changed_at(3), [batch()], "cpu") == 0.0  # the last position predicts nothing
    assert next_token_kl(source, changed_at(0), [batch()], "cpu") == 0.0  # it predicts a prompt token
    moved = next_token_kl(source, changed_at(1), [batch()], "cpu")  # predicts the answer's first token
    uniform, peaked = torch.full((VOCAB,), 1 / VOCAB), torch.softmax(torch.tensor([5.0, 0, 0, 0, 0]), 0)
    expected = float((uniform * (uniform.log() - peaked.log())).sum()) / 2  # one of the two positions
    assert math.isclose(moved, expected, rel_tol=1e-6)
    assert next_token_kl(source, changed_at(2), [batch()], "cpu") == moved


def test_no_loss_bearing_position_is_nan_not_zero() -> None:
    source = FixedLogits(torch.zeros(1, 4, VOCAB))
    empty = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "labels": torch.full((1, 4), -100)}
    assert math.isnan(next_token_kl(source, source, [empty], "cpu"))
