"""DPO's loss and figures on hand-computed log-probs, and a row's sequence log-prob by hand."""

from __future__ import annotations

import math

import torch

from tuneyard.training.loss import IGNORE_INDEX, dpo_terms, sequence_logps


def test_dpo_loss_is_minus_log_sigmoid_of_beta_times_the_log_ratio_difference() -> None:
    # pair 0: policy gains 1.0 on the preferred answer and loses 0.5 on the other: logits 1.5
    # pair 1: the policy moved toward the wrong answer: logits -1 - 1 = -2
    # pair 2: nothing moved: logits 0
    policy_w = torch.tensor([-2.0, -4.0, -3.0])
    policy_l = torch.tensor([-5.5, -2.0, -6.0])
    ref_w = torch.tensor([-3.0, -3.0, -3.0])
    ref_l = torch.tensor([-5.0, -3.0, -6.0])
    terms = dpo_terms(policy_w, policy_l, ref_w, ref_l, beta=0.1)
    margins = [0.15, -0.2, 0.0]
    expected = [-math.log(1 / (1 + math.exp(-m))) for m in margins]
    assert torch.allclose(terms.margins, torch.tensor(margins), atol=1e-7)
    assert torch.allclose(terms.losses, torch.tensor(expected), atol=1e-7)
    assert math.isclose(expected[2], math.log(2))
    assert terms.correct == 1  # only pair 0; a tie is not a preference


def test_dpo_loss_is_finite_where_the_sigmoid_underflows_and_its_gradient_flows_to_the_policy() -> None:
    policy_w = torch.tensor([-1000.0], requires_grad=True)
    terms = dpo_terms(policy_w, torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), beta=1.0)
    assert math.isclose(float(terms.losses.detach()[0]), 1000.0)  # -log sigmoid(-1000), not inf
    terms.losses.sum().backward()
    assert policy_w.grad is not None and math.isclose(float(policy_w.grad[0]), -1.0)  # d/dz softplus(-z)
    assert not terms.margins.requires_grad


def test_sequence_logps_sums_the_answer_tokens_only() -> None:
    # vocabulary of 3; logits at positions 0..2 predict tokens 1..3 of each row
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6], [1, 1, 1]]]))
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2, 0]])  # the prompt is token 1, the answer 2 then 0
    got = sequence_logps(logits, labels)
    assert torch.allclose(got, torch.tensor([math.log(0.8) + math.log(0.2)]), atol=1e-6)
