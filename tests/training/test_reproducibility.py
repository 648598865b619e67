"""A run is a function of its resolved spec: the model cache's state does not change the model.

Building tiny-llama on a cold cache draws thousands of numbers from torch's global generator;
a warm cache draws none. Every consumer of randomness (LoRA's initialisation, dropout, the data
order, the eval split) is seeded from the spec's seed where it draws, so both end bit for bit equal.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.support.runs import arithmetic_chat, final_tensors, run_runner, step_losses, write_jsonl, write_spec


def test_cold_and_warm_model_cache_give_bitwise_equal_runs(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(16))
    # Dropout and an eval split, so every seeded consumer is exercised.
    spec = write_spec(tmp_path, data, max_steps=3, lora_dropout=0.1, eval_split=0.2)

    cold_cache = tmp_path / "cold-cache"  # tiny-llama is built in this run, from the global streams' process
    assert run_runner(spec, tmp_path / "cold", cold_cache) == 0
    assert run_runner(spec, tmp_path / "warm", model_cache) == 0

    assert step_losses(tmp_path / "cold") == step_losses(tmp_path / "warm")
    cold, warm = final_tensors(tmp_path / "cold"), final_tensors(tmp_path / "warm")
    assert cold.keys() == warm.keys() and cold
    for name, tensor in cold.items():
        assert torch.equal(tensor, warm[name]), name
