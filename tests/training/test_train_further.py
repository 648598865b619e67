"""A LoRA job's checkpoint as the base model of another job (a checkpoint id, or OpenAI's
fine_tuned_model_checkpoint, names one): its adapter is folded into its base and trained further."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support.runs import arithmetic_chat, run_runner, write_jsonl, write_spec


def test_a_lora_checkpoint_is_a_base_model_trained_to_the_end(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", arithmetic_chat(8))
    first = tmp_path / "first"
    first.mkdir()
    assert run_runner(write_spec(first, data, max_steps=2), first / "run", model_cache) == 0
    weights = first / "run" / "checkpoints" / "step-000002" / "model"
    assert (weights / "adapter_config.json").is_file()
    second = tmp_path / "second"
    second.mkdir()
    spec_path = write_spec(second, data, max_steps=2)
    spec = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump({**spec, "base_model": str(weights)}))
    run_dir = second / "run"
    assert run_runner(spec_path, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()[-3000:]
    source = json.loads((run_dir / "spec.json").read_text())["resolved"]["model_source"]
    assert source["kind"] == "peft_adapter" and isinstance(source["base"]["path"], str)
    assert (run_dir / "final" / "adapter_config.json").is_file()
