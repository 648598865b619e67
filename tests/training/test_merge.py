"""merge: a LoRA adapter folded into its base computes what the adapter on its base computed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.support.runs import run_runner, telemetry
from tuneyard.training.models import load_model, load_tokenizer, resolve_model_source
from tuneyard.training.models.tiny_llama import ensure_tiny_llama
from tuneyard.training.ops.merge import MAX_LOGIT_DELTA, PROBE_TEXTS

# peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model here
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def load_base(base: Path) -> Any:
    """A base model folder or GGUF file as the runner loads it (a GGUF dequantized to fp32), in eval mode."""
    return load_model(resolve_model_source(str(base), base.parent))


def make_adapter(base: Path, folder: Path, seed: int = 3) -> Path:
    """A LoRA adapter with random, non-zero B (peft's init_lora_weights=False), as if trained; its
    config names `base` (the model's local name) as its base."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = load_base(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder, save_embedding_layers=False)
    load_tokenizer(resolve_model_source(str(base), base.parent)).save_pretrained(folder)
    return folder


def merge_spec(folder: Path, adapter: Path, **fields: str) -> Path:
    path = folder / "merge.yaml"
    path.write_text(yaml.safe_dump({"type": "merge", "base_model": str(adapter), **fields}), encoding="utf-8")
    return path


@torch.no_grad()
def adapter_logits(base: Path, adapter: Path, ids: torch.Tensor) -> torch.Tensor:
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(base), adapter).eval()(input_ids=ids).logits


@torch.no_grad()
def check_merged(run_dir: Path, base: Path, adapter: Path) -> dict[str, object]:
    """The merged folder: full weights that plain transformers loads, no adapter files, and logits
    equal to base + adapter within 1e-4 on text the job's own probe never saw."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = run_dir / "final"
    assert (final / "model.safetensors").is_file() and (final / "manifest.json").is_file()
    assert not list(final.glob("adapter_*")), sorted(p.name for p in final.iterdir())
    merged = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(final)
    ids = torch.tensor([tokenizer("a small cat reads the river, 12 plus 30 is 42.")["input_ids"]])
    expected = adapter_logits(base, adapter, ids)
    assert not torch.allclose(expected, load_base(base)(input_ids=ids).logits, atol=1e-3), \
        "the adapter must change the logits for this test to mean anything"
    # 1e-4 for logits up to 10 in size, relative beyond: SmolLM2's reach ~20, where the merged fp32
    # weights' rounding left 1.4e-4 on an AMX host (7e-6 of the scale; 1.7e-4 with both sides in fp64).
    bound = 1e-4 * max(1.0, expected.abs().max().item() / 10)
    assert (merged(input_ids=ids).logits - expected).abs().max().item() <= bound
    result: dict[str, object] = json.loads((run_dir / "result.json").read_text())
    return result


def test_merge_folds_a_lora_adapter_exactly(tmp_path: Path, model_cache: Path) -> None:
    base = ensure_tiny_llama(model_cache)
    adapter = make_adapter(base, tmp_path / "adapter")
    # As a trained adapter on a registered base names it: by the service's id, which the service
    # resolves and passes on as adapter_base.
    config_file = adapter / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "base_model_name_or_path": "bm_x"}))
    run_dir = tmp_path / "run"
    spec = merge_spec(tmp_path, adapter, adapter_base=str(base))
    assert run_runner(spec, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()

    result = check_merged(run_dir, base, adapter)
    assert result["base"] == str(base)
    assert 0 <= float(result["max_logit_delta"]) <= 1e-4  # type: ignore[arg-type]
    assert result["logit_delta_bound"] == MAX_LOGIT_DELTA and result["probe_sequences"] == len(PROBE_TEXTS)
    phases = [r["phase"] for r in telemetry(run_dir) if r["kind"] == "phase"]
    assert phases == ["loading_model", "merging", "saving", "done"]
    card = (run_dir / "final" / "README.md").read_text()
    assert "Full model weights" in card and "merged into its own base" in card


def test_merging_full_weights_is_a_user_error_naming_base_model(tmp_path: Path, model_cache: Path) -> None:
    run_dir = tmp_path / "run"
    base = ensure_tiny_llama(model_cache)
    assert run_runner(merge_spec(tmp_path, base), run_dir, model_cache) == 3
    error = next(r for r in telemetry(run_dir) if r["kind"] == "error")
    assert error["error_type"] == "user_error" and error["details"]["field"] == "base_model"
    assert "not a LoRA adapter" in error["message"]
    assert not (run_dir / "final").exists()


@pytest.mark.slow
def test_merge_smollm2(tmp_path: Path, model_cache: Path) -> None:
    from tests.support.models import smollm2_gguf_path

    base = smollm2_gguf_path()  # the adapter names the GGUF file; the merge dequantizes it as training did
    adapter = make_adapter(base, tmp_path / "adapter")
    run_dir = tmp_path / "run"
    assert run_runner(merge_spec(tmp_path, adapter), run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()
    # The job's own probe (fp32, logits up to ~20): 1.7e-4 on an AMX host, 7e-6 of the scale; see check_merged.
    assert float(check_merged(run_dir, base, adapter)["max_logit_delta"]) <= 2e-4  # type: ignore[arg-type]
