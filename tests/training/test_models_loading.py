"""Loading sources as trainable models: built-in, local folder, and a LoRA adapter merged in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneyard.training.models import TINY_LLAMA, load_model, load_tokenizer, resolve_model_source
from tuneyard.training.models.chat_template import CHATML_TEMPLATE

# peft 0.21 reads a property transformers 5 deprecated, whenever a PeftModel is made
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

IDS = torch.tensor([[1, 40, 300, 41, 700, 12, 2, 202]])


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def _save_adapter(model: torch.nn.Module, folder: Path, seed: int) -> torch.Tensor:
    """Wrap `model` in a LoRA with non-zero B (so it changes the output), save it, return its logits."""
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    # explicit: peft's "auto" looks the base name up on the hub when it is not a model folder
    peft_model.save_pretrained(folder, save_embedding_layers=False)
    return _logits(peft_model)


@pytest.fixture(scope="module")
def tiny_source(model_cache: Path):
    return resolve_model_source(TINY_LLAMA, model_cache)


def test_builtin_loads_dense_fp32_with_pad_and_template(tiny_source) -> None:
    assert tiny_source.kind == "builtin" and tiny_source.builtin_id == TINY_LLAMA
    model = load_model(tiny_source)
    tokenizer = load_tokenizer(tiny_source)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config._attn_implementation == "sdpa"
    assert model.name_or_path == str(tiny_source.path)  # what peft records as an adapter's base
    assert tokenizer.pad_token == "<|pad|>" and "<|im_start|>" in tokenizer.chat_template


def test_bf16_load(tiny_source) -> None:
    model = load_model(tiny_source, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_tokenizer_without_pad_or_template_gets_both(tiny_source, tmp_path: Path) -> None:
    bare = AutoTokenizer.from_pretrained(tiny_source.path)
    bare.pad_token = None
    bare.chat_template = None
    folder = tmp_path / "bare"
    bare.save_pretrained(folder)
    AutoModelForCausalLM.from_pretrained(tiny_source.path).save_pretrained(folder)
    source = resolve_model_source(str(folder), tmp_path / "cache")
    assert source.kind == "hf_dir"
    tokenizer = load_tokenizer(source)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.chat_template == CHATML_TEMPLATE


def test_adapter_folder_as_base_merges_to_the_same_logits(tiny_source, model_cache: Path, tmp_path: Path) -> None:
    base_logits = _logits(load_model(tiny_source))
    expected = _save_adapter(load_model(tiny_source), tmp_path / "lora1", seed=1)
    assert not torch.allclose(expected, base_logits, atol=1e-3)

    source = resolve_model_source(str(tmp_path / "lora1"), model_cache)
    assert source.kind == "peft_adapter"
    assert source.base is not None and source.base.kind == "builtin"
    merged = load_model(source)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged), expected, atol=1e-5, rtol=1e-5)

    # a LoRA trained on the merged model stacks: its base resolves back through the first adapter
    expected2 = _save_adapter(merged, tmp_path / "lora2", seed=2)
    stacked = resolve_model_source(str(tmp_path / "lora2"), model_cache)
    assert stacked.chain == [str(tmp_path / "lora2"), str(tmp_path / "lora1"), TINY_LLAMA]
    torch.testing.assert_close(_logits(load_model(stacked)), expected2, atol=1e-5, rtol=1e-5)


def test_merged_model_saves_and_reloads_as_a_plain_folder(tiny_source, model_cache: Path, tmp_path: Path) -> None:
    expected = _save_adapter(load_model(tiny_source), tmp_path / "lora", seed=3)
    merged = load_model(resolve_model_source(str(tmp_path / "lora"), model_cache))
    merged.save_pretrained(tmp_path / "merged")
    reloaded = load_model(resolve_model_source(str(tmp_path / "merged"), model_cache))
    torch.testing.assert_close(_logits(reloaded), expected, atol=1e-5, rtol=1e-5)


def test_adapter_with_an_unloadable_base_says_which(tmp_path: Path, model_cache: Path) -> None:
    base = load_model(resolve_model_source(TINY_LLAMA, model_cache))
    _save_adapter(base, tmp_path / "lora", seed=4)
    (tmp_path / "lora" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    from tuneyard.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="cannot apply the adapter to 'tiny-llama'"):
        load_model(resolve_model_source(str(tmp_path / "lora"), model_cache))


def test_peft_reference_agrees(tiny_source, tmp_path: Path) -> None:
    # sanity for the comparison above: PeftModel.from_pretrained reproduces the saved adapter
    expected = _save_adapter(load_model(tiny_source), tmp_path / "lora", seed=5)
    again = PeftModel.from_pretrained(load_model(tiny_source), tmp_path / "lora")
    torch.testing.assert_close(_logits(again), expected)


def test_adapter_on_tiny_llama_survives_a_moved_model_cache(tiny_source, model_cache: Path, tmp_path: Path) -> None:
    expected = _save_adapter(load_model(tiny_source), tmp_path / "lora", seed=6)
    config_file = tmp_path / "lora" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = str(tmp_path / "old-cache" / tiny_source.path.name)
    config_file.write_text(json.dumps(config))
    source = resolve_model_source(str(tmp_path / "lora"), model_cache)
    assert source.base is not None and source.base.kind == "builtin"
    torch.testing.assert_close(_logits(load_model(source)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["gguf", "peft_adapter"])
def test_a_base_that_cannot_be_quantized_on_load_is_a_user_error_before_loading(tmp_path: Path, kind: str) -> None:
    """qlora's 4-bit quantization happens inside from_pretrained; a GGUF or merged adapter base never gets there."""
    from tuneyard.errors import UnsupportedError
    from tuneyard.training.models import ModelSource

    base = ModelSource(TINY_LLAMA, "builtin", tmp_path, builtin_id=TINY_LLAMA)
    source = (ModelSource("m.gguf", "gguf", tmp_path, gguf_file="m.gguf") if kind == "gguf"
              else ModelSource(str(tmp_path), "peft_adapter", tmp_path, base=base))
    with pytest.raises(UnsupportedError, match="use lora"):
        load_model(source, load_options={"quantization_config": object()})
