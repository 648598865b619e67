"""The compute of a training job in FLOPs, and its time from a throughput measured on the worker.

FLOPs per token follow the usual accounting (Kaplan et al. 2020, "Scaling Laws for Neural
Language Models", sec. 2.1; Chinchilla's appendix F): a forward pass is 2 FLOPs per matmul
weight plus the attention scores and their use, 2 x layers x context x attention width, with a
causal context of half the row; backward costs twice the forward when every weight is trained
(gradients for activations and for weights) and once the forward when the base is frozen under
LoRA (gradients for activations only, the adapter's are negligible); gradient checkpointing adds
one more forward. Time is FLOPs divided by the FLOP/s this worker reached on its own finished
jobs (`tuneyard.planning.calibration`), so the constant factors of the device are measured, not guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tuneyard.planning.memory import TrainingSetup
from tuneyard.planning.shape import ModelShape


def flops_per_token(shape: ModelShape, setup: TrainingSetup) -> float:
    """Training FLOPs for one token of one row (forward, backward, any recompute)."""
    context = min(setup.max_seq_length, setup.batch.row_tokens) / 2  # causal: half the row on average
    attention = 2 * 2 * shape.layers * context * shape.heads * shape.head_dim
    forward = 2 * shape.matmul_params + attention
    if setup.adapter:
        forward += 2 * shape.lora_params(setup.lora_rank, setup.lora_targets)
    backward = forward if setup.adapter else 2 * forward
    recompute = forward if setup.gradient_checkpointing else 0
    return forward + backward + recompute


@dataclass(frozen=True)
class RunSize:
    """How much a job trains on: optimizer steps and the tokens its rows hold."""

    steps: int
    tokens: int


def run_size(setup: TrainingSetup, max_steps: int | None, epochs: int, dataset_tokens: int | None) -> RunSize | None:
    """Steps and tokens of a run; None when it depends on a dataset size that is not known.

    Packed rows are full, so a step holds accumulation x batch_size x max_seq_length tokens, or
    the whole dataset when it is smaller than one step (an epoch's last step may be short)."""
    step_tokens = setup.gradient_accumulation_steps * setup.batch.tokens
    if dataset_tokens is not None:
        steps_per_epoch = max(1, math.ceil(dataset_tokens / step_tokens))
        if max_steps is None:
            return RunSize(epochs * steps_per_epoch, epochs * dataset_tokens)
        return RunSize(max_steps, max_steps * min(step_tokens, dataset_tokens))
    if max_steps is None:
        return None
    return RunSize(max_steps, max_steps * step_tokens)


def train_flops(shape: ModelShape, setup: TrainingSetup, tokens: int) -> float:
    return flops_per_token(shape, setup) * tokens
