"""contract jobs: the MLP of every layer contracted (structured: smaller matrices), parameters down by
exactly what the shapes say, loadable with plain transformers, and a fine-tune of it completes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.support.runs import arithmetic_chat, run_runner, telemetry, write_jsonl, write_spec


def write_contract_spec(folder: Path, base_model: str, data: Path | None = None, **fields: Any) -> Path:
    spec = {"type": "contract", "base_model": base_model, **fields,
            "datasets": [{"path": str(data)}] if data else []}
    path = folder / "contract.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def contracted(run_dir: Path, ratio: float) -> tuple[dict[str, Any], Any]:
    """The result and the model plain transformers loads from final/, checked against the shapes."""
    from transformers import AutoModelForCausalLM

    result: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(run_dir / "final", dtype=torch.float32)
    source = json.loads((run_dir / "final" / "config.json").read_text())
    layers, hidden = source["num_hidden_layers"], source["hidden_size"]
    keep = model.config.intermediate_size
    original = round(keep / (1 - ratio))  # the source's width, as kept_channels rounded it
    # gate_proj and up_proj lose (original - keep) rows of `hidden`, down_proj as many columns: no biases
    assert result["params_before"] - result["params_after"] == layers * 3 * hidden * (original - keep)
    assert result["params_after"] == sum(p.numel() for p in model.parameters())
    assert result["params_delta"] == result["params_after"] - result["params_before"] < 0
    return result, model


def test_contract_with_calibration_text_then_finetune_it(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "calibration.jsonl", arithmetic_chat(24))
    run_dir = tmp_path / "contracted"
    assert run_runner(write_contract_spec(tmp_path, "tiny-llama", data), run_dir, model_cache) == 0, \
        (run_dir / "runner.log").read_text()[-3000:]
    result, model = contracted(run_dir, 0.5)
    assert model.config.intermediate_size == 192 and result["intermediate_size"] == 192  # 384 halved
    assert result["params_before"] - result["params_after"] == 4 * 3 * 128 * 192
    assert result["importance"] == "activation" and result["layers_contracted"] == 4
    assert result["ppl_baseline"] > 0 and result["ppl_final"] > 0 and result["function_preservation"] > 0
    phases = [r["phase"] for r in telemetry(run_dir) if r["kind"] == "phase"]
    assert phases == ["loading_model", "loading_data", "pruning", "final_eval", "saving", "done"]

    finetune = tmp_path / "finetune"
    finetune.mkdir()
    spec = write_spec(finetune, data, method="lora", max_steps=3)
    raw = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**raw, "base_model": str(run_dir / "final")}))
    assert run_runner(spec, finetune / "run", model_cache) == 0, (finetune / "run" / "runner.log").read_text()[-3000:]
    assert (finetune / "run" / "final" / "adapter_model.safetensors").is_file()


def test_contract_without_data_uses_weight_magnitude(tmp_path: Path, model_cache: Path) -> None:
    run_dir = tmp_path / "run"
    spec = write_contract_spec(tmp_path, "tiny-llama", contraction_ratio=0.25, num_layers_to_contract=8)
    assert run_runner(spec, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()[-3000:]
    result, model = contracted(run_dir, 0.25)
    assert model.config.intermediate_size == 288 and result["importance"] == "weight_magnitude"
    assert result["ppl_baseline"] is None and result["function_preservation"] is None
    assert "no calibration text" in result["ppl_reason"]


def heal_runs(folder: Path, model_cache: Path, base_model: str, runs: dict[str, dict[str, Any]],
              ratio: float = 0.5, timeout: float = 300) -> dict[str, tuple[dict[str, Any], dict[str, Any], Path]]:
    """Contractions of one model healing on arithmetic chats, measured on held-out ones it never trains
    on: by run name, (the result, the resolved spec.json, the run folder)."""
    train = write_jsonl(folder / "train.jsonl", arithmetic_chat(32))
    held = write_jsonl(folder / "held.jsonl", arithmetic_chat(12, offset=100))
    out = {}
    for name, fields in runs.items():
        (folder / name).mkdir()
        spec = {"type": "contract", "base_model": base_model, "contraction_ratio": ratio, **fields,
                "datasets": [{"path": str(train)}, {"path": str(held), "split": "eval"}]}
        (folder / name / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
        run_dir = folder / name / "run"
        assert run_runner(folder / name / "spec.yaml", run_dir, model_cache, timeout=timeout) == 0, \
            (run_dir / "runner.log").read_text()[-3000:]
        out[name] = (contracted(run_dir, ratio)[0], json.loads((run_dir / "spec.json").read_text()), run_dir)
    return out


def healing_rates(run_dir: Path) -> list[float]:
    return [r["lr"] for r in telemetry(run_dir) if r["kind"] == "metric" and r.get("phase") == "healing"]


def test_healing_a_trained_model_at_its_default_rate_lowers_held_out_perplexity(
        tmp_path: Path, model_cache: Path) -> None:
    """Issue 11: a contraction heals a trained model, so the source is trained first. Healing at the rate
    its size takes by default (the resolved spec says which, and why) must not raise the held-out
    perplexity above the unhealed contraction's; a rate given is the one used."""
    trained = tmp_path / "trained"
    trained.mkdir()
    spec = write_spec(trained, write_jsonl(trained / "chats.jsonl", arithmetic_chat(48)), method="full",
                      max_steps=40, learning_rate=3.0e-3)
    assert run_runner(spec, trained / "run", model_cache) == 0, (trained / "run" / "runner.log").read_text()[-3000:]
    runs = heal_runs(tmp_path, model_cache, str(trained / "run" / "final"), {
        "unhealed": {}, "default": {"heal_steps": 8}, "given": {"heal_steps": 4, "heal_learning_rate": 1.0e-2}})
    (unhealed, _, _), (healed, resolved, healed_dir), (given, given_spec, given_dir) = runs.values()
    assert healed["ppl_baseline"] == unhealed["ppl_baseline"]  # the same source, on the same held-out rows
    assert healed["params_after"] == unhealed["params_after"]  # healing trains, it does not grow
    assert healed["ppl_final"] <= unhealed["ppl_final"], (unhealed["ppl_final"], healed["ppl_final"])
    assert healed["heal_loss_final"] < healed["heal_loss_first"] and unhealed["heal_loss_final"] is None
    print(f"\nheld-out ppl: source {unhealed['ppl_baseline']:.3f}, contracted {unhealed['ppl_final']:.3f}, "
          f"healed {healed['ppl_final']:.3f}; at 1e-2 {given['ppl_final']:.3f}")

    # tiny-llama's size takes 1e-3 (catalog.heal_learning_rate), resolved by the runner from the model
    assert (resolved["heal_learning_rate"], resolved["origins"]) == (1.0e-3, {"heal_learning_rate": "base_model"})
    assert healing_rates(healed_dir) == [1.0e-3] * 8 and healed["heal_learning_rate"] == 1.0e-3
    assert (given_spec["heal_learning_rate"], given_spec["origins"]) == (1.0e-2, {"heal_learning_rate": "user"})
    assert healing_rates(given_dir) == [1.0e-2] * 4 and given["heal_learning_rate"] == 1.0e-2
    assert given["ppl_final"] > unhealed["ppl_final"]  # ten times its size's rate wrecks it (38 vs 4 measured)
    phases = [r["phase"] for r in telemetry(healed_dir) if r["kind"] == "phase"]
    assert "healing" in phases and "healing" not in [r["phase"] for r in telemetry(runs["unhealed"][2])
                                                      if r["kind"] == "phase"]


def test_whole_layers_removed_by_influence_then_the_mlps_contracted(tmp_path: Path, model_cache: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tuneyard.training.models import load_model, resolve_model_source

    data = write_jsonl(tmp_path / "calibration.jsonl", arithmetic_chat(24))
    run_dir = tmp_path / "run"
    spec = write_contract_spec(tmp_path, "tiny-llama", data, contraction_ratio=0.5, remove_layers=2)
    assert run_runner(spec, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(run_dir / "final", dtype=torch.float32)
    assert model.config.num_hidden_layers == 2 and result["layers_contracted"] == 2
    assert result["layers_removed"] == [1, 2]  # never the first or the last of tiny-llama's 4
    source = load_model(resolve_model_source("tiny-llama", model_cache))
    layer = sum(p.numel() for p in source.model.layers[0].parameters())
    # two whole layers, then each of the two left loses 192 of 384 channels in gate, up and down (128 wide)
    assert result["params_before"] - result["params_after"] == 2 * layer + 2 * 3 * 128 * 192
    assert result["params_after"] == sum(p.numel() for p in model.parameters())
    assert result["function_preservation"] > 0


def test_healing_without_calibration_text_is_refused_naming_heal_steps() -> None:
    from tuneyard.errors import SpecError
    from tuneyard.spec.parse import parse_spec

    with pytest.raises(SpecError) as refused:
        parse_spec({"type": "contract", "base_model": "tiny-llama", "heal_steps": 5})
    assert [p["field"] for p in refused.value.problems] == ["heal_steps"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_contract_smollm2_then_finetune_it(tmp_path: Path, model_cache: Path) -> None:
    from tests.support.models import smollm2_gguf_path

    run_dir = tmp_path / "run"
    spec = write_contract_spec(tmp_path, str(smollm2_gguf_path()))
    assert run_runner(spec, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()[-3000:]
    result, model = contracted(run_dir, 0.5)
    assert model.config.intermediate_size == 768 and result["importance"] == "weight_magnitude"  # 1536 halved
    assert result["params_before"] - result["params_after"] == 30 * 3 * 576 * 768  # SmolLM2: 30 layers, 576 wide
    del model

    finetune = tmp_path / "finetune"
    finetune.mkdir()
    data = write_jsonl(tmp_path / "chats.jsonl", arithmetic_chat(8))
    raw = yaml.safe_load(write_spec(finetune, data, method="lora", max_steps=2, max_seq_length=48).read_text())
    (finetune / "job.yaml").write_text(yaml.safe_dump({**raw, "base_model": str(run_dir / "final")}))
    assert run_runner(finetune / "job.yaml", finetune / "run", model_cache, timeout=1500) == 0, \
        (finetune / "run" / "runner.log").read_text()[-3000:]
    assert (finetune / "run" / "final" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_healing_smollm2_at_its_default_rate_keeps_held_out_perplexity(tmp_path: Path, model_cache: Path) -> None:
    """Issue 11: healing at a flat 1e-3 took SmolLM2's held-out perplexity 23 → 173; at its size's rate
    (2e-5) it is no higher than the unhealed contraction's. Prints the three perplexities."""
    from tests.support.models import smollm2_gguf_path

    runs = heal_runs(tmp_path, model_cache, str(smollm2_gguf_path()),
                     {"unhealed": {}, "default": {"heal_steps": 8}}, ratio=0.25, timeout=1500)
    (unhealed, _, _), (healed, resolved, _) = runs.values()
    print(f"\nSmolLM2 held-out ppl: source {unhealed['ppl_baseline']:.3f}, contracted {unhealed['ppl_final']:.3f}, "
          f"healed {healed['ppl_final']:.3f} at {resolved['heal_learning_rate']}")
    assert resolved["heal_learning_rate"] == 2.0e-5
    assert healed["ppl_final"] <= unhealed["ppl_final"]
