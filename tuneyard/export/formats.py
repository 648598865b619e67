"""Export formats and GGUF quantizations, registered by name, each with its verification bound.

Pure data, no torch: the API validates requests against it, the export process reads the bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tuneyard.spec.registry import Registry

Variant = Literal["merged", "adapter"]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    description: str
    quantized: bool
    """Whether a request names a quantization (a GGUF does, safetensors does not)."""


@dataclass(frozen=True)
class Quantization:
    """A GGUF weight type and the bound its export must meet against transformers' fp32 logits.

    Top-1 is held where the fp32 model made a choice: positions whose top-1 logit leads the
    runner-up by at least `tie_margin`. A near-tie is not a choice any rounding is bound to keep:
    SmolLM2-135M's Q8_0 export flipped 10 of 154 positions, every one led by at most 0.26 in fp32,
    and transformers itself, with weights and matmul inputs rounded to Q8_0 blocks as llama.cpp's
    CPU kernels round them, flips the same share (top-1 0.9351) against its own fp32 logits. Every
    position still counts for `max_abs_logit_delta`, and the export records top-1 over all positions.
    f16 and q8_0 keep 99 % of the decided positions, as users of llama.cpp expect of them; q4_k_m
    loses more by design, so it is held to 90 %. q8_0's logit bound is the most Q8_0 rounding moved
    SmolLM2's logits inside transformers (2.42), rounded up. A perturbed tensor breaks both figures
    by far more than any of these bounds allows (tests/training/test_export_gguf.py).
    """

    name: str
    converter_outtype: str | None
    """The converter's --outtype; None when llama.cpp's quantizer makes it from an f16 GGUF."""
    llama_ftype: int | None
    """llama.cpp's LLAMA_FTYPE_* for the quantizer (converter-made types need none)."""
    min_top1: float
    """Share of decided positions (see `tie_margin`) whose top-1 token must agree."""
    max_abs_logit_delta: float
    tie_margin: float
    """How far, in logits, fp32's top-1 must lead its runner-up for a position to count for `min_top1`."""


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format")
EXPORT_FORMATS.register(ExportFormat(
    "safetensors", "Hugging Face folder: the merged full weights, or a LoRA adapter as trained", quantized=False))
EXPORT_FORMATS.register(ExportFormat(
    "gguf", "one GGUF file for llama.cpp and Ollama, verified against transformers, with a Modelfile",
    quantized=True))

QUANTIZATIONS: Registry[Quantization] = Registry("quantization")
QUANTIZATIONS.register(Quantization("f16", "f16", None, min_top1=0.99, max_abs_logit_delta=0.5, tie_margin=0.1))
QUANTIZATIONS.register(Quantization("q8_0", "q8_0", None, min_top1=0.99, max_abs_logit_delta=2.5, tie_margin=0.5))
# LLAMA_FTYPE_MOSTLY_Q4_K_M in llama.h
QUANTIZATIONS.register(Quantization("q4_k_m", None, 15, min_top1=0.90, max_abs_logit_delta=6.0, tie_margin=1.0))

DEFAULT_QUANTIZATION = "q8_0"
