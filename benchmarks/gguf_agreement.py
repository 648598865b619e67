"""How far Q8_0's rounding alone moves SmolLM2-135M-Instruct from its fp32 self, on the export's
verification texts and with the export's comparison (top-1 agreement, max |Δlogit|): transformers
with every matrix rounded as Q8_0 stores it (blocks of 32, one fp16 scale of absmax/127), and with
each linear layer's input rounded too (llama.cpp's CPU kernels quantize the activations to Q8_0
blocks for a Q8_0 weight); also how close to a tie the flipped positions were in fp32 (top-1 − top-2
logit). Set beside the q8_0 export's own figures (tests/training/test_export_smollm2.py) it says
whether a q8_0 GGUF that misses the bound misses it through the quantization or through the
converter or the comparison.

Measured on the loaded 2-core host: weights as Q8_0 top-1 0.9481, max |Δlogit| 1.254, 8 flips (fp32
margin at most 0.268); weights and inputs as Q8_0 top-1 0.9351, max |Δlogit| 2.415, 10 flips (at
most 0.262); the q8_0 export read top-1 0.9351, max |Δlogit| 1.857.

    .venv/bin/python -m benchmarks.gguf_agreement
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import numpy as np
import torch

from benchmarks.model_ops import CACHE, smollm2
from tuneyard.export.verify import VERIFY_TEXTS

Q8_BLOCK = 32


def q8_0(values: torch.Tensor) -> torch.Tensor:
    """`values` (last dimension a multiple of 32) as Q8_0 holds them: per block of 32, int8 codes
    times one fp16 scale of absmax/127."""
    blocks = values.reshape(*values.shape[:-1], -1, Q8_BLOCK)
    scale = (blocks.abs().amax(-1, keepdim=True) / 127).half().float()
    codes = torch.where(scale > 0, torch.round(blocks / scale.clamp_min(1e-30)), torch.zeros_like(blocks))
    return (codes.clamp(-127, 127) * scale).reshape(values.shape)


def rounded(model: Any, activations: bool) -> Any:
    """A copy of `model` with every matrix (embedding included) rounded to Q8_0, and, with
    `activations`, every linear layer's input rounded to Q8_0 blocks as llama.cpp's kernels do."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Embedding):
                module.weight.copy_(q8_0(module.weight))
            if activations and isinstance(module, torch.nn.Linear):
                module.register_forward_pre_hook(lambda _m, inputs: (q8_0(inputs[0]),))
    return twin


def hf_logits(model: Any, ids: list[int]) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def rounded_logits(model: Any, activations: bool, sequences: list[list[int]]) -> list[np.ndarray]:
    twin = rounded(model, activations)
    return [hf_logits(twin, ids) for ids in sequences]


def compare(reference: list[np.ndarray], other: list[np.ndarray]) -> dict[str, float]:
    ref, oth = np.concatenate(reference), np.concatenate(other)
    agree = ref.argmax(-1) == oth.argmax(-1)
    top2 = np.sort(ref, -1)[:, -2:]
    margins = (top2[:, 1] - top2[:, 0])[~agree]
    return {"positions": len(ref), "top1": float(agree.mean()), "max_delta": float(np.abs(ref - oth).max()),
            "flips": int((~agree).sum()), "flip_margin_max": float(margins.max()) if len(margins) else 0.0}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from tuneyard.training.models.loading import load_model, load_tokenizer
    from tuneyard.training.models.source import resolve_model_source

    source = resolve_model_source(str(smollm2()), CACHE / "models")
    model, tokenizer = load_model(source), load_tokenizer(source)
    sequences = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in VERIFY_TEXTS]
    reference = [hf_logits(model, ids) for ids in sequences]
    print(f"SmolLM2-135M-Instruct against fp32 transformers, {len(VERIFY_TEXTS)} verification texts")
    print(f"{'variant':<44}{'positions':>10}{'top-1':>8}{'max|Δ|':>8}{'flips':>6}{'max fp32 margin of a flip':>27}")
    for label, activations in (("weights", False), ("weights and inputs", True)):
        row = compare(reference, rounded_logits(model, activations, sequences))
        print(f"{'transformers, ' + label + ' as Q8_0':<44}{row['positions']:>10}{row['top1']:>8.4f}"
              f"{row['max_delta']:>8.3f}{row['flips']:>6}{row['flip_margin_max']:>27.3f}")


if __name__ == "__main__":
    main()
