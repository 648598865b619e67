"""Answers generated for held-out prompts, in batches, with what the model thought of each token.

Prompts are left-padded so every row's answer starts at the same column; transformers derives
each row's positions from the attention mask when generating, so padding changes no answer.
Generation settings are given whole (a `GenerationConfig` of our own), never merged with the
model's `generation_config.json`, so a checkpoint's sampling defaults cannot change what a
"greedy" evaluation means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig


@dataclass(frozen=True)
class Answer:
    ids: list[int]
    mean_logprob: float
    """Mean log-probability the model gave its own answer's tokens (0.0 for an empty answer)."""


@torch.no_grad()
def generate_answers(
    model: Any, prompts: list[list[int]], *, pad_id: int, stop_ids: set[int], max_new_tokens: int,
    batch_size: int, device: torch.device, temperature: float | None = None, seed: int = 0,
) -> list[Answer]:
    """One answer per prompt: greedy, or sampled at `temperature` (each batch seeded from `seed`)."""
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=temperature is not None, temperature=temperature or 1.0,
        top_k=None, top_p=None, pad_token_id=pad_id, eos_token_id=sorted(stop_ids) or None,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    answers: list[Answer] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        ids, mask = _left_padded(batch, pad_id, device)
        if temperature is not None:
            torch.manual_seed(seed + start)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        new = out.sequences[:, ids.shape[1] :]
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        answers += [_cut(new[i].tolist(), logprobs[i].tolist(), stop_ids) for i in range(len(batch))]
    return answers


def _left_padded(batch: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, prompt in enumerate(batch):
        ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[i, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def _cut(ids: list[int], logprobs: list[float], stop_ids: set[int]) -> Answer:
    """The answer up to its first stop token (excluded), with the mean log-probability of what is kept
    and of the stop token itself, which the model chose as much as any word."""
    end = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    scored = logprobs[: min(end + 1, len(ids))]
    return Answer(ids[:end], sum(scored) / len(scored) if scored else 0.0)
