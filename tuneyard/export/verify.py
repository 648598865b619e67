"""Verification of a GGUF: llama.cpp's tokens and logits against transformers' on the same text.

For each verification text both tokenizers must give the same ids; then both models read those
ids and every position is compared: does the top-1 token agree, and how far apart are the logits.
Top-1 is held on the positions where transformers' top-1 leads its runner-up by the quantization's
`tie_margin` (a near-tie is no choice for rounding to keep) and recorded over all of them too.
The export is offered only when the figures meet its quantization's bound (`formats.Quantization`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneyard.export.formats import Quantization
from tuneyard.export.llama_loading import load_llama

VERIFY_TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "What is 7 plus 5? 7 plus 5 is 12. That is the answer.",
    "In 1905, Einstein published four papers; one explained the photoelectric effect.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Numbers: 3 33 333 3.14 -42 1e10, and symbols: @#$%^&*()[]{}",
    "Café, naïve, jalapeño; 東京; Привет мир; emoji 🚀 and tabs\tand  double  spaces.",
)
"""Texts in plain prose, arithmetic, code, numbers, symbols and non-ASCII; the service adds the
model's chat template applied to conversations from its own data when it has some."""


@dataclass
class Verification:
    quantization: str
    texts: int
    positions: int = 0
    tokenization_identical: bool = True
    tokenization_mismatches: list[dict[str, Any]] = field(default_factory=list)
    top1_agreement: float = 0.0
    """Over every position, near-ties included: recorded, not held."""
    decided_positions: int = 0
    """Positions whose fp32 top-1 leads its runner-up by at least the bound's tie margin."""
    decided_top1_agreement: float = 0.0
    """Top-1 agreement over the decided positions: what the bound holds."""
    max_abs_logit_delta: float = 0.0
    bound: dict[str, float] = field(default_factory=dict)
    passed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failure(self) -> str:
        """Why the export is refused, with its figures."""
        if not self.tokenization_identical:
            return (f"llama.cpp tokenizes {len(self.tokenization_mismatches)} of {self.texts} verification "
                    f"texts differently from transformers (first: {self.tokenization_mismatches[0]})")
        return (f"the GGUF's logits disagree with transformers': top-1 agreement {self.decided_top1_agreement:.4f} "
                f"on the {self.decided_positions} positions transformers decides by ≥ {self.bound['tie_margin']} "
                f"(bound ≥ {self.bound['min_top1']}; {self.top1_agreement:.4f} on all {self.positions}), "
                f"max |Δlogit| {self.max_abs_logit_delta:.4f} (bound ≤ {self.bound['max_abs_logit_delta']})")


def verify(model: Any, tokenizer: Any, gguf_file: Path, texts: list[str], quantization: Quantization,
           threads: int) -> Verification:
    """Compare `model` (transformers, fp32) with the GGUF on `texts`; `passed` says if it meets the bound."""
    result = Verification(quantization.name, len(texts), bound={
        "min_top1": quantization.min_top1, "max_abs_logit_delta": quantization.max_abs_logit_delta,
        "tie_margin": quantization.tie_margin})
    reference = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in texts]
    n_ctx = max(len(ids) for ids in reference) + 8
    llm = load_llama(str(gguf_file), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, logits_all=True, verbose=False)
    agree = decided_agree = 0
    try:
        for index, (text, ids) in enumerate(zip(texts, reference, strict=True)):
            theirs = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            if list(theirs) != list(ids):
                result.tokenization_mismatches.append(_mismatch(index, ids, theirs))
                continue
            ours = _hf_logits(model, ids)
            llm.reset()
            llm.eval(ids)
            gguf_logits = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
            same = ours.argmax(-1) == gguf_logits.argmax(-1)
            decided = _leads(ours) >= quantization.tie_margin
            agree += int(same.sum())
            decided_agree += int((same & decided).sum())
            result.decided_positions += int(decided.sum())
            result.positions += len(ids)
            result.max_abs_logit_delta = max(result.max_abs_logit_delta,
                                             float(np.abs(ours - gguf_logits).max()))
    finally:
        llm.close()
    result.tokenization_identical = not result.tokenization_mismatches
    result.top1_agreement = agree / result.positions if result.positions else 0.0
    result.decided_top1_agreement = decided_agree / result.decided_positions if result.decided_positions else 0.0
    result.passed = (result.tokenization_identical and result.decided_positions > 0
                     and result.decided_top1_agreement >= quantization.min_top1
                     and result.max_abs_logit_delta <= quantization.max_abs_logit_delta)
    return result


def _leads(logits: np.ndarray) -> np.ndarray:
    """How far each position's top-1 logit is ahead of its runner-up."""
    top_two = np.partition(logits, -2, axis=-1)[:, -2:]  # the runner-up, then the top-1
    return top_two[:, 1] - top_two[:, 0]


def _hf_logits(model: Any, ids: list[int]) -> np.ndarray:
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0]
    return logits.float().numpy()


def _mismatch(index: int, ours: list[int], theirs: list[int]) -> dict[str, Any]:
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                 min(len(ours), len(theirs)))
    return {"text": index, "first_difference": first, "transformers": ours[first:first + 5],
            "llama_cpp": list(theirs[first:first + 5])}
