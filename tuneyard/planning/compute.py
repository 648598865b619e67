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
    context = min(setup.max_seq_length, setup.batch.span) / 2  # causal: half the span on average
    attention = 2 * 2 * shape.layers * context * shape.heads * shape.head_dim
    forward = 2 * shape.matmul_params + attention
    if setup.adapter:
        forward += 2 * shape.lora_params(setup.lora_rank, setup.lora_targets)
    backward = forward if setup.adapter else 2 * forward
    recompute = forward if setup.gradient_checkpointing else 0
    return forward + backward + recompute


@dataclass(frozen=True)
class RunSize:
    """How much a job trains on: optimizer steps (and an epoch's, when known) and the tokens its rows hold."""

    steps: int
    tokens: int
    steps_per_epoch: int | None = None


def steps_per_epoch(setup: TrainingSetup, dataset_tokens: int | None, dataset_examples: int | None) -> int | None:
    """Optimizer steps of one epoch, as the engine counts them (`training/plan.TrainingPlan`): its rows in
    micro-batches of batch_size, gradient_accumulation_steps of them a step. A row is one example
    without packing (so batch_size x accumulation examples a step, as in HF Trainer), or a row of
    max_seq_length tokens filled with examples under packing (about tokens / max_seq_length rows)."""
    if setup.packing:
        rows = None if dataset_tokens is None else math.ceil(dataset_tokens / setup.max_seq_length)
    else:
        rows = dataset_examples
    if rows is None:
        return None
    return max(1, math.ceil(math.ceil(rows / setup.batch_size) / setup.gradient_accumulation_steps))


def run_size(setup: TrainingSetup, max_steps: int | None, epochs: int, dataset_tokens: int | None,
             dataset_examples: int | None = None) -> RunSize | None:
    """Steps and tokens of a run; None when it depends on a dataset size that is not known.

    A step holds accumulation x the micro-batch's tokens (`MicroBatch`), or the whole dataset when
    it is smaller than one step; an epoch is `steps_per_epoch`, else the dataset's tokens over a step's."""
    step_tokens = setup.gradient_accumulation_steps * setup.batch.tokens
    if dataset_tokens is not None:
        per_epoch = steps_per_epoch(setup, dataset_tokens, dataset_examples)
        epoch_steps = per_epoch or max(1, math.ceil(dataset_tokens / step_tokens))
        if max_steps is None:
            return RunSize(epochs * epoch_steps, epochs * dataset_tokens, per_epoch)
        return RunSize(max_steps, max_steps * min(step_tokens, dataset_tokens), per_epoch)
    if max_steps is None:
        return None
    return RunSize(max_steps, max_steps * step_tokens)


def train_flops(shape: ModelShape, setup: TrainingSetup, tokens: int) -> float:
    return flops_per_token(shape, setup) * tokens
