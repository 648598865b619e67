"""tiny-llama: the same bytes from every build, plain-transformers loadable, a working ChatML."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneyard.training.models import TINY_LLAMA, get_builtin
from tuneyard.training.models.tiny_llama import ensure_tiny_llama, tiny_llama_dir

HASHED = ("tokenizer.json", "model.safetensors", "config.json")


def _digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in HASHED}


def test_two_builds_in_separate_processes_are_byte_identical(tmp_path: Path) -> None:
    here = ensure_tiny_llama(tmp_path / "a")
    code = (
        "import sys; from pathlib import Path; "
        "from tuneyard.training.models.tiny_llama import ensure_tiny_llama; "
        "print(ensure_tiny_llama(Path(sys.argv[1])))"
    )
    # another hash seed: nothing in the build may depend on set or dict ordering of strings
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b")], capture_output=True, text=True, check=True, env=env
    )
    there = Path(out.stdout.strip().splitlines()[-1])
    assert here != there
    assert _digests(here) == _digests(there)


def test_concurrent_makers_share_one_complete_folder(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_tiny_llama(tmp_path))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [tiny_llama_dir(tmp_path)] * 2
    assert [p.name for p in tmp_path.iterdir()] == [tiny_llama_dir(tmp_path).name]  # no staging left


def test_plain_transformers_loads_and_generates(model_cache: Path) -> None:
    folder = ensure_tiny_llama(model_cache)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    entry = get_builtin(TINY_LLAMA)
    assert entry is not None
    assert model.num_parameters() == entry.parameters
    assert model.config.model_type == entry.architecture
    assert model.config.max_position_embeddings == entry.context_length
    assert 2000 <= len(tokenizer) <= 4096

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 12 plus 30?"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape == (1, prompt["input_ids"].shape[1] + 8) or out[0, -1] == tokenizer.eos_token_id
    assert torch.equal(out[0, : prompt["input_ids"].shape[1]], prompt["input_ids"][0])


def test_chatml_template_and_assistant_mask(model_cache: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_llama(model_cache))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nCapital of France?<|im_end|>\n"
        "<|im_start|>assistant\nParis.<|im_end|>\n"
    )
    enc = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    answer = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(answer) == "Paris.<|im_end|>"


def test_byte_level_bpe_round_trips_any_text(model_cache: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_llama(model_cache))
    text = "Grüße, 世界! 🙂  tabs\tand\nnewlines — def f(x): return x**2"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    common = tokenizer("The model reads the question today.", add_special_tokens=False)["input_ids"]
    assert len(common) <= 8  # real merges, not one token per byte
