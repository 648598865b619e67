"""train jobs on tiny-llama, fp32 on CPU: growth keeps the function before the first step, training
then brings the eval loss below the source model's, and a grown job killed (SIGKILL) mid-training
and resumed ends bitwise equal to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.support.runs import arithmetic_chat, final_tensors, run_runner, start_runner, step_losses, wait_for
from tests.support.runs import write_jsonl as write_data

# fp32 on the CPU so two runs compare bit for bit; 48 examples, a tenth held out for evaluation.
GROW_HYPERPARAMS: dict[str, Any] = {"lr": 2e-3, "seq_len": 64, "batch_size": 4, "bf16": False, "seed": 7,
                                    "cycles": 2, "steps_per_cycle": 5}


def write_grow_spec(folder: Path, data: Path, **fields: Any) -> Path:
    spec = {"type": "train", "base_model": "tiny-llama", "datasets": [{"path": str(data)}],
            "hyperparams": {**GROW_HYPERPARAMS, **fields.pop("hyperparams", {})}, **fields}
    path = folder / "grow.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def result(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    return data


@pytest.mark.parametrize("growth", [{"depth_factor": 2.0}, {"width_factor": 1.5}], ids=["depth2", "width1.5"])
def test_grown_model_keeps_its_function_then_learns(
    tmp_path: Path, model_cache: Path, growth: dict[str, float]
) -> None:
    from transformers import AutoModelForCausalLM

    data = write_data(tmp_path / "train.jsonl", arithmetic_chat(48))
    run_dir = tmp_path / "run"
    spec = write_grow_spec(tmp_path, data, growth=growth, hyperparams={"output_name": "grown"})
    assert run_runner(spec, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()[-3000:]

    card = result(run_dir)
    assert card["function_preservation"] <= 1e-6
    assert card["eval_loss_final"] < card["eval_loss_baseline"]  # the source model's, on the eval split
    assert card["ppl_final"] < card["ppl_baseline"] and card["ppl_delta_pct"] < 0
    assert card["params_after"] - card["params_before"] == card["params_delta"] > 0
    assert card["steps"] == 2 * 5 and card["tokens_processed"] > 0 and card["cost_usd"] == 0
    assert card["output_name"] == "grown" and card["train_scope"] == "all"
    # A growth job trains, so it is held to its memory estimate and calibrates throughput like a fine-tune.
    assert card["memory"]["estimated_peak_bytes"] > 0 and card["memory"]["measured_peak_bytes"] > 0
    assert card["compute"]["train_flops"] > 0
    model = AutoModelForCausalLM.from_pretrained(run_dir / "final", dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == card["params_after"]
    assert (model.config.num_hidden_layers, model.config.intermediate_size) == (card["layers"],
                                                                                card["intermediate_size"])


def test_sigkilled_grown_job_resumes_bitwise_equal(tmp_path: Path, model_cache: Path) -> None:
    data = write_data(tmp_path / "train.jsonl", arithmetic_chat(48))
    spec = write_grow_spec(tmp_path, data, growth={"depth_factor": 1.5, "width_factor": 1.25},
                           hyperparams={"save_steps": 2, "train_scope": "new"})
    straight = tmp_path / "straight"
    assert run_runner(spec, straight, model_cache) == 0, (straight / "runner.log").read_text()[-3000:]

    crashed = tmp_path / "crashed"
    proc = start_runner(spec, crashed, model_cache)
    wait_for(lambda: proc.poll() is not None or max(step_losses(crashed), default=0) >= 5, interval=0.01)
    assert proc.poll() is None, "the run ended before it could be killed mid-training"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(step_losses(crashed))
    assert 5 <= killed_at < 10
    assert run_runner(spec, crashed, model_cache, resume="latest") == 0, (crashed / "runner.log").read_text()[-3000:]

    assert step_losses(crashed) == step_losses(straight)
    expected, actual = final_tensors(straight), final_tensors(crashed)
    assert expected.keys() == actual.keys() and expected
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
    assert result(crashed)["function_preservation"] == result(straight)["function_preservation"] <= 1e-6


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a few full-weight steps of a 135M model (grown) on a loaded 2-core host
def test_grown_smollm2_keeps_its_function_then_learns(tmp_path: Path, model_cache: Path) -> None:
    """SmolLM2-135M-Instruct (its GGUF, dequantized) grown in depth and width, then trained: no change
    before the first step, and an eval loss below the source model's after a few."""
    from tests.support.models import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    data = write_data(tmp_path / "train.jsonl", arithmetic_chat(40))
    run_dir = tmp_path / "run"
    spec = write_grow_spec(tmp_path, data, base_model=str(gguf), growth={"depth_factor": 1.25, "width_factor": 1.25},
                           hyperparams={"lr": 1e-4, "seq_len": 48, "batch_size": 2, "cycles": 1,
                                        "steps_per_cycle": 4, "eval_split": 0.1})
    assert run_runner(spec, run_dir, model_cache, timeout=2300) == 0, (run_dir / "runner.log").read_text()[-3000:]
    card = result(run_dir)
    assert card["function_preservation"] <= 1e-6
    assert card["eval_loss_final"] < card["eval_loss_baseline"], (card["eval_loss_baseline"], card["eval_loss_final"])
    assert (card["layers"], card["intermediate_size"]) == (round(30 * 1.25), round(1536 * 1.25))
    assert card["params_after"] - card["params_before"] == card["params_delta"] > 0
