"""DPO on tiny-llama through the runner: the policy learns to prefer the right sums, from exactly ln 2."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from tests.support.runs import (
    final_tensors,
    run_runner,
    start_runner,
    stop_after_step,
    telemetry,
    write_jsonl,
    write_spec,
)


def preference_pairs(n: int) -> list[dict[str, Any]]:
    """OpenAI's DPO rows: a sum asked, the right answer preferred over a wrong one."""
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, (i * 3) % 5 + 2
        rows.append({
            "input": {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"{a + b}."}],
            "non_preferred_output": [{"role": "assistant", "content": f"I do not know, maybe {a * b + 9}?"}],
        })
    return rows


DPO = {"max_steps": 16, "batch_size": 4, "beta": 0.5, "learning_rate": 3.0e-3}


def test_dpo_raises_preference_accuracy_on_its_training_pairs(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(8))
    run_dir = tmp_path / "run"
    assert run_runner(write_spec(tmp_path, data, "dpo", **DPO), run_dir, model_cache) == 0, \
        (run_dir / "runner.log").read_text()[-3000:]
    records = telemetry(run_dir)
    metrics = [r for r in records if r["kind"] == "metric"]
    assert [m["step"] for m in metrics] == list(range(1, 17))
    # The adapter starts as the identity (LoRA's B is zero), so the policy is the reference: every
    # margin is 0, the first step's loss is -log sigmoid(0) = ln 2 and no pair is ranked right yet.
    assert math.isclose(metrics[0]["loss"], math.log(2), rel_tol=1e-6)
    assert metrics[0]["preference_accuracy"] == 0.0 and metrics[0]["reward_margin"] == 0.0
    assert metrics[-1]["loss"] < 0.5 * math.log(2) and metrics[-1]["reward_margin"] > 0
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals[0]["baseline"] and evals[0]["eval_on"] == "train_sample"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["preference_accuracy_baseline"] == 0.0
    assert result["preference_accuracy_final"] >= 0.875, result
    assert math.isclose(result["dpo_loss_baseline"], math.log(2), rel_tol=1e-6)
    assert result["dpo_loss_final"] < result["dpo_loss_baseline"]
    assert result["beta"] == 0.5
    assert (run_dir / "final" / "adapter_config.json").is_file()  # a LoRA adapter, loadable on its base


def test_dpo_resumed_ends_bitwise_equal_to_uninterrupted(tmp_path: Path, model_cache: Path) -> None:
    """The reference log-probs are taken from the base with the adapter off, before the checkpoint is
    restored, so a resumed run computes exactly the losses the uninterrupted one does."""
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(8))
    spec = write_spec(tmp_path, data, "dpo", **{**DPO, "max_steps": 8})
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert run_runner(spec, whole, model_cache) == 0
    assert stop_after_step(start_runner(spec, resumed, model_cache), resumed, 3) == 75
    assert run_runner(spec, resumed, model_cache, resume="latest") == 0, \
        (resumed / "runner.log").read_text()[-3000:]
    expected, got = final_tensors(whole), final_tensors(resumed)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_sft_on_preference_pairs_and_dpo_on_chats_are_user_errors(tmp_path: Path, model_cache: Path) -> None:
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(4))
    chats = write_jsonl(tmp_path / "chats.jsonl",
                        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}])
    for data, method, said in ((pairs, "lora", "method 'dpo' only"), (chats, "dpo", "not a preference pair")):
        folder = tmp_path / method
        folder.mkdir()
        run_dir = folder / "run"
        assert run_runner(write_spec(folder, data, method, max_steps=2), run_dir, model_cache) == 3
        errors = [r for r in telemetry(run_dir) if r["kind"] == "error"]
        assert errors[0]["error_type"] == "user_error" and said in json.dumps(errors[0]), errors[0]
        assert not (run_dir / "final").exists()
