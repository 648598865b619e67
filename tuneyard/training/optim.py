"""AdamW and the learning-rate schedule: linear warmup, then cosine, linear or constant."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tuneyard.spec import Hyperparams


def build_optimizer(model: torch.nn.Module, hp: Hyperparams) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no decay on biases and norms (1-D tensors)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": hp.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.learning_rate)


def lr_multiplier(kind: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(progress, 1.0)
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


def build_scheduler(
    optimizer: torch.optim.Optimizer, hp: Hyperparams, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup_steps = math.ceil(hp.warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(hp.lr_scheduler, warmup_steps, total_steps)
    )
