"""Every data format trains end to end; bad data is a user error; final/ loads without tuneyard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.runs import arithmetic_chat, run_runner, telemetry, write_jsonl, write_spec
from tuneyard.spec import FORMATS as REGISTERED_FORMATS

FORMATS: dict[str, list[dict[str, Any]]] = {
    "chat": arithmetic_chat(8),
    "sharegpt": [
        {"conversations": [{"from": "human", "value": f"Say {i}."}, {"from": "gpt", "value": f"{i}, said."}]}
        for i in range(8)
    ],
    "alpaca": [{"instruction": "Double the number.", "input": str(i), "output": str(2 * i)} for i in range(8)],
    "prompt_completion": [
        {"prompt": f"Count to {i}:", "completion": " ".join(map(str, range(i + 1)))} for i in range(8)
    ],
    "text": [{"text": f"Line {i} of a small plain text corpus about counting."} for i in range(8)],
    "preference": [
        {"input": {"messages": [{"role": "user", "content": f"Say {i}."}]},
         "preferred_output": [{"role": "assistant", "content": f"{i}."}],
         "non_preferred_output": [{"role": "assistant", "content": "No."}]}
        for i in range(8)
    ],
}
METHOD_OF_FORMAT = {"preference": "dpo"}  # preference pairs train with DPO only; the rest with LoRA


def test_every_registered_format_is_trained_here() -> None:
    assert tuple(FORMATS) == REGISTERED_FORMATS.names()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_trains(tmp_path: Path, model_cache: Path, fmt: str) -> None:
    data = write_jsonl(tmp_path / f"{fmt}.jsonl", FORMATS[fmt])
    spec = write_spec(tmp_path, data, METHOD_OF_FORMAT.get(fmt, "lora"), max_steps=2, batch_size=2)
    run_dir = tmp_path / "run"
    assert run_runner(spec, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()[-2000:]
    metrics = [r for r in telemetry(run_dir) if r["kind"] == "metric"]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["loss"] > 0 and m["tokens"] > 0 for m in metrics)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"] == 2 and result["tokens_processed"] == metrics[-1]["tokens"]


def test_malformed_data_is_a_line_numbered_user_error(tmp_path: Path, model_cache: Path) -> None:
    lines = [json.dumps(r) for r in arithmetic_chat(3)]
    lines.insert(1, "{not json")
    lines.append(json.dumps({"messages": [{"role": "user", "content": "no answer"}]}))
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = write_spec(tmp_path, data, max_steps=2)
    run_dir = tmp_path / "run"
    assert run_runner(spec, run_dir, model_cache) == 3
    errors = [r for r in telemetry(run_dir) if r["kind"] == "error"]
    assert len(errors) == 1 and errors[0]["error_type"] == "user_error"
    bad_lines = sorted(e["line"] for e in errors[0]["details"]["errors"])
    assert bad_lines == [2, 5]
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())
    assert not (run_dir / "final").exists()


def test_unknown_spec_field_is_a_user_error(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(4))
    spec = write_spec(tmp_path, data, learning_rat=0.1)
    run_dir = tmp_path / "run"
    assert run_runner(spec, run_dir, model_cache) == 3
    [error] = [r for r in telemetry(run_dir) if r["kind"] == "error"]
    assert {"field": "hyperparams.learning_rat", "message": "unknown field"} in error["details"]["problems"]


def test_qlora_on_cpu_is_a_user_error_not_a_platform_one(tmp_path: Path, model_cache: Path) -> None:
    """Exit 3 is never retried; before the registries, qlora died of a KeyError (exit 1, retried)."""
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(4))
    spec = write_spec(tmp_path, data, method="qlora", max_steps=1)
    run_dir = tmp_path / "run"
    assert run_runner(spec, run_dir, model_cache) == 3
    [error] = [r for r in telemetry(run_dir) if r["kind"] == "error"]
    assert error["error_type"] == "user_error" and "qlora" in error["message"]
    assert not (run_dir / "final").exists()


def test_a_job_type_the_runner_does_not_know_is_a_user_error(tmp_path: Path, model_cache: Path) -> None:
    # Every declared type has a recipe now (test_spec_registries holds the two equal): what is left
    # for the runner to refuse is a type nobody declared.
    spec = tmp_path / "distill.json"
    spec.write_text(json.dumps({"type": "distill", "base_model": "tiny-llama"}))
    run_dir = tmp_path / "run"
    assert run_runner(spec, run_dir, model_cache) == 3
    [error] = [r for r in telemetry(run_dir) if r["kind"] == "error"]
    assert error["error_type"] == "user_error" and "type" in error["message"], error


# peft 0.21 calls a transformers 5 property that is deprecated; nothing of ours to fix.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("method", ["lora", "full"])
def test_final_loads_with_plain_transformers_and_generates(tmp_path: Path, model_cache: Path, method: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(16))
    spec = write_spec(tmp_path, data, method=method, max_steps=3)
    run_dir = tmp_path / "run"
    assert run_runner(spec, run_dir, model_cache) == 0
    final = run_dir / "final"
    assert (final / "manifest.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(final)
    if method == "lora":
        from peft import PeftModel

        from tuneyard.training.models.tiny_llama import ensure_tiny_llama

        assert (final / "adapter_config.json").exists() and not (final / "model.safetensors").exists()
        # The adapter names its base portably ("tiny-llama", which any machine builds), as its card says.
        assert json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-llama"
        assert "tiny-llama" in (final / "README.md").read_text()
        base = AutoModelForCausalLM.from_pretrained(ensure_tiny_llama(tmp_path / "another-cache"))
        model = PeftModel.from_pretrained(base, final)
    else:
        model = AutoModelForCausalLM.from_pretrained(final)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 3?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(out[0]), str)


def test_resolved_spec_records_origins_and_can_be_run_again(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(8))
    spec = write_spec(tmp_path, data, max_steps=2)
    run_dir = tmp_path / "run"
    assert run_runner(spec, run_dir, model_cache) == 0
    resolved = json.loads((run_dir / "spec.json").read_text())
    origins = resolved["origins"]
    assert origins["hyperparams.max_steps"] == "user"
    assert origins["hyperparams.lora_rank"] == "default"
    assert origins["hyperparams.gradient_accumulation_steps"] == "default"
    assert resolved["resolved"]["device"] == "cpu" and resolved["resolved"]["bf16"] is False
    assert resolved["resolved"]["model_source"]["kind"] == "builtin"
    # A worker starts every attempt from the run's own spec.json; it must parse and keep its origins.
    again = tmp_path / "again"
    again.mkdir()
    (again / "spec.json").write_text(json.dumps(resolved))
    assert run_runner(again / "spec.json", again, model_cache) == 0
    assert json.loads((again / "spec.json").read_text())["origins"] == origins
