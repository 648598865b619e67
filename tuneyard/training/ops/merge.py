"""Folding a LoRA adapter into its base, checked against the adapter on its base.

peft's `merge_and_unload` adds the scaled low-rank update B·A to each adapted weight. In fp32 the
merged model computes what the base with its adapter computed, up to rounding; `fold` measures how
far apart the two are on a few probe sequences (max |Δlogit|), and a merge further apart than
`MAX_LOGIT_DELTA` fails rather than leave a model that quietly is not the one that was trained.
"""

from __future__ import annotations

from typing import Any

import torch

from tuneyard.errors import UserError

MAX_LOGIT_DELTA = 1e-3
"""The largest |merged − (base + adapter)| logit a merge may leave, both computed in fp32.

Rounding alone stays near 1e-5 on tiny-llama and SmolLM2-135M (the tests hold it under 1e-4); a
bound ten times above the largest such rounding at the logit scales of small models, still far
below a difference that would change a sampled token. Above it, the adapter was not folded as it
was trained (a layer type peft merges differently, weights cast on the way)."""

PROBE_TEXTS = (
    "The model reads the data and writes a short answer.",
    "<|im_start|>user\nWhat is 7 plus 5?<|im_end|>\n<|im_start|>assistant\n7 plus 5 is 12.<|im_end|>",
    'def add(a, b):\n    return a + b  # {"sum": 3}',
    "Der Fluss fließt ruhig durch die Stadt, und die Kinder spielen am Ufer.",
)
"""Probe sequences: prose, a chat turn, code with JSON, and text outside most small models' data."""

PROBE_TOKENS = 48
"""Tokens per probe: enough positions for attention to mix, few enough to run in seconds on CPU."""


class MergeMismatch(UserError):
    """base_model: the merged model does not compute what the adapter on its base computes."""


def probe_ids(tokenizer: Any) -> torch.Tensor:
    """The probe texts as one batch of token ids, each cut to the shortest (no padding to mask)."""
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"][:PROBE_TOKENS] for text in PROBE_TEXTS]
    length = min(len(ids) for ids in encoded)
    return torch.tensor([ids[:length] for ids in encoded], dtype=torch.long)


@torch.no_grad()
def fold(adapted: Any, probe: torch.Tensor) -> tuple[Any, float]:
    """(the base with the adapter folded in, max |Δlogit| between it and the unmerged adapter on
    `probe`). `adapted` is a peft model in eval mode, and is consumed: its base is merged in place."""
    adapted.eval()
    before = adapted(input_ids=probe, use_cache=False).logits.float()
    merged = adapted.merge_and_unload()
    after = merged(input_ids=probe, use_cache=False).logits.float()
    return merged, float((after - before).abs().max())


def check_delta(delta: float, adapter: str) -> None:
    """Refuse a merge whose logits moved further than `MAX_LOGIT_DELTA`."""
    if not delta <= MAX_LOGIT_DELTA:  # NaN included
        raise MergeMismatch(
            f"base_model: folding adapter {adapter!r} into its base changed the logits by up to {delta:.3g} "
            f"(bound {MAX_LOGIT_DELTA:g}); the merged model would not be the one that was trained",
            field="base_model", max_logit_delta=delta,
        )
