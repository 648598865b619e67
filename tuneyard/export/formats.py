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

    Bounds are over every position of the verification sequences: the share of positions whose
    top-1 token is the same (`min_top1`) and the largest absolute logit difference
    (`max_abs_logit_delta`). f16 and q8_0 keep 99 % top-1 as users of llama.cpp expect of them;
    q4_k_m loses more by design, so it is held to 90 %. A perturbed tensor breaks both figures by
    far more than any of these bounds allows (tests/training/test_export_gguf.py).
    """

    name: str
    converter_outtype: str | None
    """The converter's --outtype; None when llama.cpp's quantizer makes it from an f16 GGUF."""
    llama_ftype: int | None
    """llama.cpp's LLAMA_FTYPE_* for the quantizer (converter-made types need none)."""
    min_top1: float
    max_abs_logit_delta: float


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format")
EXPORT_FORMATS.register(ExportFormat(
    "safetensors", "Hugging Face folder: the merged full weights, or a LoRA adapter as trained", quantized=False))
EXPORT_FORMATS.register(ExportFormat(
    "gguf", "one GGUF file for llama.cpp and Ollama, verified against transformers, with a Modelfile",
    quantized=True))

QUANTIZATIONS: Registry[Quantization] = Registry("quantization")
QUANTIZATIONS.register(Quantization("f16", "f16", None, min_top1=0.99, max_abs_logit_delta=0.5))
QUANTIZATIONS.register(Quantization("q8_0", "q8_0", None, min_top1=0.99, max_abs_logit_delta=1.5))
# LLAMA_FTYPE_MOSTLY_Q4_K_M in llama.h
QUANTIZATIONS.register(Quantization("q4_k_m", None, 15, min_top1=0.90, max_abs_logit_delta=6.0))

DEFAULT_QUANTIZATION = "q8_0"
